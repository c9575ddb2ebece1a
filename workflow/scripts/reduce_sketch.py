"""Adapter: rule reduce_sketch → hessketch.pipeline.reduce.reduce_sketch_store."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.reduce import reduce_sketch_store

run_job(
    snakemake,
    reduce_sketch_store,
    store_path=snakemake.input.store,
    receipt_paths=list(snakemake.input.receipts),
    eigenpairs_path=snakemake.output.eigenpairs,
    report_path=snakemake.output.report,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(points=snakemake.input.points, **snakemake.params.hessian),
)
