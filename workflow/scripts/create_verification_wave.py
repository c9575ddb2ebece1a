"""Adapter: rule create_verification_wave → hessketch.pipeline.waves.create_verification_wave."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.waves import create_verification_wave

run_job(
    snakemake,
    create_verification_wave,
    eigenpairs_path=snakemake.input.eigenpairs,
    pairs=snakemake.params.pairs,
    block_size=snakemake.params.block_size,
    store_path=snakemake.output.store,
)
