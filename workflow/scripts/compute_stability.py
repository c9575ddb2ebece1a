"""Adapter: rule compute_stability → hessketch.pipeline.stability.compute_stability."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.stability import compute_stability

run_job(
    snakemake,
    compute_stability,
    eigenpairs=snakemake.params.eigenpairs,
    trajectory_path=snakemake.input.trajectory,
    k=snakemake.params.k,
    table_path=snakemake.output.table,
)
