"""Adapter: rule measure_sketch_shard → hessketch.pipeline.measure.measure_sketch_shard."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.measure import measure_sketch_shard

run_job(
    snakemake,
    measure_sketch_shard,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    hessian=HessianSpec(
        points=snakemake.input.points,
        **snakemake.params.hessian,
        batch_size=snakemake.resources.hvp_batch_size,
    ),
    store_path=snakemake.input.store,
    scatter_item=snakemake.wildcards.scatteritem,
    receipt_path=snakemake.output.receipt,
)
