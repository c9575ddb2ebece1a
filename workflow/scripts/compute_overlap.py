"""Adapter: rule compute_overlap → hessketch.pipeline.overlap.compute_overlap."""

from hessketch.pipeline.common import run_job
from hessketch.pipeline.overlap import compute_overlap

run_job(
    snakemake,
    compute_overlap,
    eigenpairs_path=snakemake.input.eigenpairs,
    trajectory_path=snakemake.input.trajectory,
    step=int(snakemake.wildcards.step),
    report_k=snakemake.params.report_k,
    random_mask_seed=snakemake.params.random_mask_seed,
    overlap_path=snakemake.output.overlap,
    distances_path=snakemake.output.distances,
    spectrum_path=snakemake.output.spectrum,
    summary_path=snakemake.output.summary,
    certificate_path=snakemake.input.get("certificate") or None,
    points_path=snakemake.input.points,
    masks=list(snakemake.params.masks),
    random_masks=snakemake.params.random_masks,
)
