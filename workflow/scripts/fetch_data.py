"""Adapter: rule fetch_data → hessketch.pipeline.fetch.fetch_data."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.fetch import fetch_data

run_job(
    snakemake,
    fetch_data,
    dataset=snakemake.params.dataset,
    name=snakemake.wildcards.name,
    url=snakemake.params.url,
    path=snakemake.output.file,
)
