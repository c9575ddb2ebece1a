"""Adapter: each plot_* rule → the function of the same name in hessketch.pipeline.figures."""

from hessketch.pipeline import figures
from hessketch.pipeline.common import run_job

style = figures.FigureStyle(**snakemake.params.style)
outputs = [snakemake.output.pdf, snakemake.output.png]
if snakemake.rule == "plot_training_curves":
    kwargs = {"metrics": snakemake.input.metrics}
else:  # the rule's params name the function's arguments
    kwargs = {key: value for key, value in snakemake.params.items() if key != "style"}
run_job(
    snakemake,
    getattr(figures, snakemake.rule),
    outputs=outputs,
    style=style,
    **kwargs,
)
