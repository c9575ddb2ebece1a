"""Adapter: each plot_* rule → the function of hessketch.pipeline.figures named after its
figure: figures/<name>.pdf is drawn by ``plot_<name>`` (not by the rule's name, which a user's
workflow may prefix: ``use rule * from hessketch as hessketch_*``)."""

from pathlib import Path

from hessketch.pipeline import figures
from hessketch.pipeline.common import run_job

style = figures.FigureStyle(**snakemake.params.style)
outputs = [snakemake.output.pdf, snakemake.output.png]
name = f"plot_{Path(snakemake.output.pdf).stem}"
if name == "plot_training_curves":
    kwargs = {"metrics": snakemake.input.metrics}
else:  # the rule's params name the function's arguments
    kwargs = {key: value for key, value in snakemake.params.items() if key != "style"}
run_job(
    snakemake,
    getattr(figures, name),
    outputs=outputs,
    style=style,
    **kwargs,
)
