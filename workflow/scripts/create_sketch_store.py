"""Adapter: rule create_sketch_store → hessketch.pipeline.measure.create_sketch_store."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.measure import create_sketch_store

run_job(
    snakemake,
    create_sketch_store,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(points=snakemake.input.points, **snakemake.params.hessian),
    sketch=dict(snakemake.params.sketch),
    store_path=snakemake.output.store,
)
