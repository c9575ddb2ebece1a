"""Adapter: rule reduce_sketch → hessketch.pipeline.reduce.reduce_sketch_store."""

from hessketch.pipeline.common import run_stage
from hessketch.pipeline.reduce import reduce_sketch_store

run_stage(
    snakemake.log[0],
    snakemake.threads,
    reduce_sketch_store,
    store_path=snakemake.input.store,
    receipt_paths=list(snakemake.input.receipts),
    eigenpairs_path=snakemake.output.eigenpairs,
    report_path=snakemake.output.report,
)
