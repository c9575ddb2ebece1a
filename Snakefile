# hessketch: Hessian eigenspaces of trained networks by sketched eigendecomposition, and their
# overlap with parameter-magnitude masks.
#
# Results path scheme (all under results/<run>/):
#   train/trajectory.h5, train/metrics.tsv             parameters and buffers at recorded steps
#   hessian/set~<s>/points.h5                          the points of Hessian set <s> (a split)
#   hessian/set~<s>/step~<t>/sketch.zarr               Y, Z, PhiY, HOmega of one Hessian
#   hessian/set~<s>/step~<t>/receipts/shard~<i>-of-<n>.json   what each measurement shard wrote
#   hessian/set~<s>/step~<t>/krylov/{wave~<j>.zarr,plan~<j>.{json,npz}}   block Krylov waves
#   hessian/set~<s>/step~<t>/method~<sketched|exact>/eigenpairs.h5   eigenvalues, eigenvectors
#   hessian/set~<s>/step~<t>/method~<m>/{overlap,distances,spectrum}.tsv, summary.json
#   hessian/set~<s>/{comparison,stability}.tsv         per set, across steps
#   figures/<name>.{pdf,png}                           one panel per Hessian set
#   logs/<rule>/..., benchmarks/<rule>/...


from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default study; a study given with --configfile replaces it whole (merging the two
# would carry the default's keys, e.g. its image size or its Hessian sets, into the other study).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# resolved from this file, so that the workflow also works as a module of another Snakefile
SCHEMA = workflow.source_path("workflow/schemas/config.schema.yaml")


validate(config, SCHEMA)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/scheduler.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sketch.smk"
include: "workflow/rules/waves.smk"
include: "workflow/rules/exact.smk"
include: "workflow/rules/overlap.smk"
include: "workflow/rules/density.smk"
include: "workflow/rules/plot.smk"


rule all:
    default_target: True
    input:
        all_figures(),
        all_summaries(),
        comparisons(),
        per_set("stability"),
        all_intermediates,


rule figures:
    input:
        all_figures(),


include: "workflow/rules/verify.smk"
