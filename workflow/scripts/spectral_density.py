"""Adapter: rule spectral_density → hessketch.pipeline.density.spectral_density."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.density import spectral_density
from hessketch.pipeline.hessian_at_step import HessianSpec

settings = snakemake.params.density
run_job(
    snakemake,
    spectral_density,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(
        points=snakemake.input.points,
        **snakemake.params.hessian,
        batch_size=snakemake.resources.hvp_batch_size,
    ),
    probes=settings["probes"],
    steps=settings["steps"],
    trace_products=settings["trace_products"],
    seed=settings["seed"],
    density_path=snakemake.output.density,
)
