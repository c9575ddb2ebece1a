"""Adapter: rule reduce_krylov → hessketch.pipeline.krylov.reduce_krylov."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.krylov import reduce_krylov

certificate = snakemake.params.certificate
run_job(
    snakemake,
    reduce_krylov,
    store_paths=list(snakemake.params.stores),
    receipt_paths=[list(r) for r in snakemake.params.receipts],
    plan_paths=list(snakemake.params.plans),
    k=snakemake.params.k,
    tolerance=certificate["tolerance"],
    space_tolerance=certificate["space_tolerance"],
    product_error=certificate["product_error"],
    eigenpairs_path=snakemake.output.eigenpairs,
    report_path=snakemake.output.report,
    certificate_path=snakemake.output.certificate,
    certificate_table_path=snakemake.output.certificate_table,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(points=snakemake.input.points, **snakemake.params.hessian),
)
