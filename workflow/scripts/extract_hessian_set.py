"""Adapter: rule extract_hessian_set → hessketch.pipeline.hessian_set.extract_hessian_set."""

from hessketch.pipeline.common import DataSpec, run_job
from hessketch.pipeline.hessian_set import extract_hessian_set

run_job(
    snakemake,
    extract_hessian_set,
    data=DataSpec(**snakemake.params.data),
    split=snakemake.wildcards.hset,
    n=snakemake.params.n,
    path=snakemake.output.points,
)
