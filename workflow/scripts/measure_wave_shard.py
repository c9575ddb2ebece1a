"""Adapter: rule measure_wave_shard → hessketch.pipeline.measure.measure_wave_shard."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.measure import measure_wave_shard

run_job(
    snakemake,
    measure_wave_shard,
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
