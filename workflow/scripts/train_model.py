"""Adapter: rule train_model → hessketch.pipeline.train.train_model."""

from hessketch.pipeline.common import DataSpec, run_job
from hessketch.pipeline.train import train_model
from hessketch.training import SGDConfig

training = dict(snakemake.params.training)
run_job(
    snakemake,
    train_model,
    data=DataSpec(**snakemake.params.data),
    model_spec=dict(snakemake.params.model),
    sgd=SGDConfig(**{**training, "record_steps": tuple(training["record_steps"])}),
    trajectory_path=snakemake.output.trajectory,
    metrics_path=snakemake.output.metrics,
)
