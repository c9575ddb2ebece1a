# hessketch: Hessian eigenspaces of trained networks by sketched eigendecomposition, and their
# overlap with parameter-magnitude masks.
#
# Results path scheme (all under results/<run>/):
#   train/trajectory.h5, train/metrics.tsv                 parameters at recorded steps
#   hessian/step~<t>/sketch.zarr                           Y, Z, PhiY, HOmega of one Hessian
#   hessian/step~<t>/receipts/shard~<i>-of-<n>.json        what each measurement shard wrote
#   hessian/step~<t>/method~<sketched|exact>/eigenpairs.h5 eigenvalues and eigenvectors
#   hessian/step~<t>/method~<m>/{overlap,distances,spectrum}.tsv, summary.json
#   figures/<name>.{pdf,png}
#   logs/<rule>/..., benchmarks/<rule>/...


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


SCHEMA = "workflow/schemas/config.schema.yaml"


validate(config, SCHEMA)


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/scheduler.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sketch.smk"
include: "workflow/rules/waves.smk"
include: "workflow/rules/exact.smk"
include: "workflow/rules/overlap.smk"
include: "workflow/rules/plot.smk"


rule all:
    default_target: True
    input:
        all_figures(),
        all_summaries(),
        comparison(),
        f"{RESULTS}/stability.tsv",
        all_intermediates(),


rule figures:
    input:
        all_figures(),
