"""Adapter: rule create_krylov_wave → hessketch.pipeline.waves.create_krylov_wave."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.krylov import create_krylov_wave

run_job(
    snakemake,
    create_krylov_wave,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    sketch=dict(snakemake.params.sketch),
    wave=int(snakemake.wildcards.index),
    previous_stores=list(snakemake.params.stores),
    previous_receipts=[list(r) for r in snakemake.params.receipts],
    store_path=snakemake.output.store,
    hessian=HessianSpec(points=snakemake.input.points, **snakemake.params.hessian),
    plan_path=snakemake.input.plan[0] if snakemake.input.plan else None,
)
