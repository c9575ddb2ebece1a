"""Adapter: rule unpack_data → hessketch.pipeline.fetch.unpack_data."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.fetch import unpack_data

run_job(
    snakemake,
    unpack_data,
    dataset=snakemake.params.dataset,
    archives=list(snakemake.input.archives),
    outputs=list(snakemake.output),
)
