"""Adapter: rule compare_to_exact → hessketch.pipeline.compare.compare_to_exact."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.compare import compare_to_exact

run_job(
    snakemake,
    compare_to_exact,
    sketched=snakemake.params.sketched,
    exact=snakemake.params.exact,
    top=snakemake.params.top,
    table_path=snakemake.output.table,
    trajectory_path=snakemake.input.trajectory,
)
