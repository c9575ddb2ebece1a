"""Adapter: rule reduce_krylov → hessketch.pipeline.krylov.reduce_krylov."""

from hessketch.pipeline.common import run_stage
from hessketch.pipeline.krylov import reduce_krylov

certificate = snakemake.params.certificate
run_stage(
    snakemake.log[0],
    snakemake.threads,
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
)
