"""Adapter: rule study_overview → hessketch.pipeline.overview.write_overview."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.overview import write_overview

run_job(
    snakemake,
    write_overview,
    study=snakemake.params.study,
    sketched=snakemake.params.sketched,
    exact=snakemake.params.exact,
    reports=snakemake.params.reports,
    comparisons=snakemake.params.comparisons,
    metrics_path=snakemake.input.metrics,
    overview_path=snakemake.output.overview,
)
