"""Adapter: checkpoint plan_krylov_wave → hessketch.pipeline.krylov.plan_krylov_wave."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.krylov import plan_krylov_wave

run_job(
    snakemake,
    plan_krylov_wave,
    sketch=dict(snakemake.params.sketch),
    certificate=dict(snakemake.params.certificate),
    wave=int(snakemake.wildcards.index),
    store_paths=list(snakemake.params.stores),
    receipt_paths=[list(r) for r in snakemake.params.receipts],
    plan_paths=list(snakemake.params.plans),
    plan_path=snakemake.output.plan,
)
