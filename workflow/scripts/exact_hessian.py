"""Adapter: rule exact_hessian → hessketch.pipeline.exact.exact_eigenpairs."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.exact import exact_eigenpairs
from hessketch.pipeline.hessian_at_step import HessianSpec

run_job(
    snakemake,
    exact_eigenpairs,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(
        points=snakemake.input.points,
        **snakemake.params.hessian,
        batch_size=snakemake.resources.hvp_batch_size,
    ),
    k=snakemake.params.k,
    max_dim=snakemake.params.max_dim,
    eigenpairs_path=snakemake.output.eigenpairs,
)
