import sys
from argparse import Namespace
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError

# The library lives in src/ of this repository; the input functions import it from there
# (the jobs' scripts import the installed package: `pip install -e .`, envs/hessketch.yaml).
sys.path.insert(0, str(Path(SCHEMA).parents[2] / "src"))

from hessketch.pipeline.common import DataSpec  # noqa: E402
from hessketch.pipeline.config import ConfigError, check_config, record_steps  # noqa: E402
from hessketch.store import read_json  # noqa: E402

try:
    check_config(config, yaml.safe_load(Path(SCHEMA).read_text()))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
HESSIAN_SETS = list(config["hessian"]["sets"])  # each set is its own Hessian, its own chain
SET = f"{RESULTS}/hessian/set~{{hset}}"
POINTS = f"{SET}/points.h5"
STEP = f"{SET}/step~{{step}}"
# the set and step of a job, for the paths of its log and benchmark files
WHICH = "set~{hset}/step~{step}"
RECEIPT = f"{STEP}/receipts/shard~{{scatteritem}}.json"


def escaped(pattern):
    """``pattern`` with {hset} and {step} escaped: gather.measure() fills in {scatteritem}
    with str.format, and the other wildcards must survive it."""
    return pattern.replace("{hset}", "{{hset}}").replace("{step}", "{{step}}")


RECEIPTS_OF_STEP = escaped(RECEIPT)
# Waves (block Krylov, or the verification wave of a one-pass sketch): a store and its receipts
WAVE_STORE = f"{STEP}/{{wave}}.zarr"
WAVE_RECEIPT = f"{STEP}/{{wave}}/receipts/shard~{{scatteritem}}.json"
VERIFICATION_RECEIPTS = escaped(
    f"{STEP}/method~sketched/verification/receipts/shard~{{scatteritem}}.json"
)
ONE_PASS = config["sketch"]["passes"] == 1
# block Krylov whose number of waves the certificate decides (plan_krylov_wave is a checkpoint)
ADAPTIVE = config["sketch"]["passes"] == "adaptive"
TABLES = ["overlap", "distances", "spectrum"]  # written beside each summary.json
FIGURE_NAMES = ["overlap_over_training", "overlap_vs_k", "spectra", "training_curves"]
if config["density"]["enabled"]:
    FIGURE_NAMES.append("spectral_density")


wildcard_constraints:
    hset="|".join(HESSIAN_SETS),
    step=r"\d+",
    method="sketched|exact",
    scatteritem=r"\d+-of-\d+",
    wave=r"krylov/wave~\d+|method~sketched/verification",
    index=r"\d+",
    figure="|".join(FIGURE_NAMES),


scattergather:
    measure=config["sketch"]["shards"],


if not gather.measure("{scatteritem}"):  # e.g. --set-scatter measure=0
    raise WorkflowError(
        "sketch.shards / --set-scatter measure=: a Hessian needs at least one measurement shard"
    )


def hessian_params():
    """How a Hessian's products are taken (its points are the input file ``points``).

    Not hessian.batch_size: it trades memory for speed only, so it is a resource
    (``hvp_batch_size``), which a profile may override per rule and which reruns nothing.
    """
    return {key: config["hessian"][key] for key in ("curvature", "dtype", "method")}


HVP_BATCH_SIZE = config["hessian"]["batch_size"]


def data_files(wildcards=None):
    """The data set's files, as inputs: changing one reruns what it feeds.

    Retrieved (data.url): every file the reader reads under resources/<dataset>/, there or
    not, so that the jobs reading them wait for the fetch jobs (data.smk). Otherwise the files
    that exist now: a file missing later is no input, and the job that reads it fails naming
    it, with the fix.
    """
    from hessketch.sources import get_source

    data = DataSpec(**config["data"])
    if data.url is not None:
        return [str(path) for path in get_source(data.dataset).targets(data.resolved_root())]
    return [str(path) for path in data.files()]


def sketch_params():
    """What defines a sketch: sizes, randomness, blocking."""
    keys = ("k", "s", "seed", "test_matrix", "block_size", "probes")
    params = {key: config["sketch"][key] for key in keys}
    if params["s"] is None:
        params["s"] = 2 * params["k"]
    return params


def krylov_params():
    """What defines a Krylov wave: the sketch's start block and the wave width, and for an
    adaptive run its budget. Not a fixed sketch.passes: more passes measure only the waves
    added, fewer reduce the waves already measured."""
    params = {**sketch_params(), "wave_width": config["sketch"]["wave_width"]}
    if ADAPTIVE:
        return {**params, "passes": "adaptive", "max_hvps": config["sketch"]["max_hvps"]}
    return {**params, "passes": "fixed", "max_hvps": None}


def certificate_params(target=False):
    """What a certificate is judged by; with ``target``, also what an adaptive run stops at."""
    keys = ("tolerance", "space_tolerance", "product_error")
    params = {key: config["certificate"][key] for key in keys}
    return {**params, "target": config["certificate"]["target"]} if target else params


def plan_params():
    """What a Krylov plan decides by: an adaptive run's certificate and target; nothing for a
    fixed number of passes (its plans only record the certificate's estimate)."""
    return certificate_params(target=True) if ADAPTIVE else {}


def training_params():
    """What defines the training run, including the steps it records."""
    return {**config["training"], "record_steps": record_steps(config)}


def step_dir(hset, step):
    """The folder of the Hessian of set ``hset`` at ``step``."""
    return STEP.format(hset=hset, step=step)


def method_steps(method):
    """The steps that have ``method``."""
    return config["hessian"]["steps"] if method == "sketched" else config["exact"]["steps"]


def summaries_of(method, hset):
    """The overlap summaries of set ``hset`` at every step that has ``method``."""
    return {t: f"{step_dir(hset, t)}/method~{method}/summary.json" for t in method_steps(method)}


def summaries_by_set(method):
    """:func:`summaries_of` for every Hessian set: set → step → summary."""
    return {hset: summaries_of(method, hset) for hset in HESSIAN_SETS}


def tables_by_set(method, name, steps):
    """Table ``name`` of ``method`` at those of ``steps`` that have it: set → step → path."""
    have = method_steps(method)
    return {
        hset: {t: f"{step_dir(hset, t)}/method~{method}/{name}.tsv" for t in steps if t in have}
        for hset in HESSIAN_SETS
    }


def densities_by_set():
    """The spectral densities drawn: set → step → path (at the steps of plots.steps_vs_k)."""
    return {
        hset: {t: f"{step_dir(hset, t)}/density.json" for t in steps_vs_k()}
        for hset in HESSIAN_SETS
    }


def files_of(by_set):
    """The paths of a set → step → path mapping, as a flat list of inputs."""
    return [path for steps in by_set.values() for path in steps.values()]


def spectrum_steps():
    """Steps drawn in the spectrum figure: those with an exact reference, else steps_vs_k."""
    return config["exact"]["steps"] or steps_vs_k()


def steps_vs_k():
    """Steps drawn in the overlap-against-k figure."""
    return config["plots"]["steps_vs_k"] or config["hessian"]["steps"]


def outputs_at_exact_steps(method, hset):
    """Eigenpairs and summary of ``method`` for set ``hset`` at every step with an exact
    reference."""
    return {
        t: {
            "eigenpairs": f"{step_dir(hset, t)}/method~{method}/eigenpairs.h5",
            "summary": f"{step_dir(hset, t)}/method~{method}/summary.json",
        }
        for t in config["exact"]["steps"]
    }


def files_at_exact_steps(method):
    """Input function: the files of :func:`outputs_at_exact_steps` of the job's set."""

    def files(wildcards):
        outputs = outputs_at_exact_steps(method, wildcards.hset)
        return [path for step in outputs.values() for path in step.values()]

    return files


def sketched_eigenpairs(hset):
    """The sketched eigenpair file of set ``hset`` at every Hessian step."""
    return {
        t: f"{step_dir(hset, t)}/method~sketched/eigenpairs.h5" for t in config["hessian"]["steps"]
    }


def per_set(name):
    """A study-wide table of every Hessian set (comparison, stability)."""
    return [f"{SET.format(hset=hset)}/{name}.tsv" for hset in HESSIAN_SETS]


def comparisons():
    """The sketched-against-exact table of every set, when the study has exact steps."""
    return per_set("comparison") if config["exact"]["steps"] else []


def sketched_reports():
    """The sketched method's report.json (HVPs, seconds, devices): set → step → path."""
    return {
        hset: {
            t: f"{step_dir(hset, t)}/method~sketched/report.json" for t in method_steps("sketched")
        }
        for hset in HESSIAN_SETS
    }


def comparisons_by_set():
    """Set → its comparison.tsv, when the study has exact steps."""
    if not config["exact"]["steps"]:
        return {}
    return {hset: f"{SET.format(hset=hset)}/comparison.tsv" for hset in HESSIAN_SETS}


# What the overview says the study is: only the settings it shows, so that a machine setting
# (data.root, hessian.batch_size) or a figure style reruns nothing.
STUDY = {
    "run": config["run"],
    "model": config["model"],
    "data": {key: config["data"][key] for key in ("dataset", "image_size")},
    "training": {key: config["training"][key] for key in ("steps", "lr", "batch_size", "seed")},
    "hessian": {key: config["hessian"][key] for key in ("steps", "sets", "curvature")},
    "sketch": {
        key: config["sketch"][key]
        for key in ("k", "s", "test_matrix", "passes", "max_hvps", "shards")
    },
    "overlap": {"report_k": config["overlap"]["report_k"]},
}


def all_summaries():
    """Every overlap summary of the study."""
    return files_of(summaries_by_set("sketched")) + files_of(summaries_by_set("exact"))


def intermediates_of_step(hset, step):
    """Every file that a step's sketched result is made of: stores, receipts, eigenpairs,
    report, certificate and the tables beside each summary."""
    here = step_dir(hset, step)
    sketched = f"{here}/method~sketched"
    files = [f"{sketched}/{name}" for name in ("eigenpairs.h5", "report.json")]
    files += [f"{sketched}/certificate.{ext}" for ext in ("json", "tsv")]
    if ONE_PASS:
        files += [f"{here}/sketch.zarr", f"{sketched}/verification.zarr"]
        files += gather.measure(f"{here}/receipts/shard~{{scatteritem}}.json")
        files += gather.measure(f"{sketched}/verification/receipts/shard~{{scatteritem}}.json")
    else:
        wildcards = Namespace(hset=hset, step=step)
        files += all_waves(wildcards) + receipts_of_all_waves(wildcards)
        files += [p for plan in plans_of_reduction(wildcards) for p in (plan, npz(plan))]
    return files


def all_intermediates(wildcards=None):
    """What every result depends on, requested by ``rule all`` so that a plain run regenerates
    any of it that is missing (a failed or forced job, a deleted receipt or eigenpair file)
    instead of reporting "Nothing to be done" over a hole. An input function: an adaptive
    run's waves are known only once its plans are (checkpoints)."""
    files = [f"{RESULTS}/train/{name}" for name in ("trajectory.h5", "metrics.tsv")]
    for hset in HESSIAN_SETS:
        files.append(POINTS.format(hset=hset))
        for step in config["hessian"]["steps"]:
            files += intermediates_of_step(hset, step)
    for method in ("sketched", "exact"):
        for summary in files_of(summaries_by_set(method)):
            files += [summary.replace("summary.json", f"{name}.tsv") for name in TABLES]
    files += [
        summary.replace("summary.json", "eigenpairs.h5")
        for summary in files_of(summaries_by_set("exact"))
    ]
    return files


def all_figures():
    """Every figure, as PDF and PNG."""
    return expand(f"{RESULTS}/figures/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["pdf", "png"])


def _krylov_wave(wildcards, index):
    return f"{step_dir(wildcards.hset, wildcards.step)}/krylov/wave~{index}"


def _receipts_of_wave(wildcards, index):
    return gather.measure(f"{_krylov_wave(wildcards, index)}/receipts/shard~{{scatteritem}}.json")


def earlier_waves(wildcards):
    """The stores of the Krylov waves before wave ``index``."""
    return [f"{_krylov_wave(wildcards, i)}.zarr" for i in range(int(wildcards.index))]


def receipts_by_earlier_wave(wildcards):
    """The receipts of each Krylov wave before wave ``index`` (one list per wave)."""
    return [_receipts_of_wave(wildcards, i) for i in range(int(wildcards.index))]


def receipts_of_earlier_waves(wildcards):
    """All receipts of the Krylov waves before wave ``index``."""
    return [r for wave in receipts_by_earlier_wave(wildcards) for r in wave]


def krylov_wave_count(wildcards):
    """The Krylov waves of a step: sketch.passes, or for an adaptive run as many as its plans
    decide (each plan a checkpoint: the next wave is planned once the last one is measured)."""
    if not ADAPTIVE:
        return config["sketch"]["passes"]
    wave = 1
    while True:
        plan = checkpoints.plan_krylov_wave.get(
            hset=wildcards.hset, step=wildcards.step, index=wave
        ).output.plan
        if read_json(plan, "Krylov plan")["decision"]["reason"] != "continue":
            return wave
        wave += 1


def all_waves(wildcards):
    """The stores of every Krylov wave of a step."""
    return [f"{_krylov_wave(wildcards, i)}.zarr" for i in range(krylov_wave_count(wildcards))]


def receipts_by_wave(wildcards):
    """The receipts of every Krylov wave of a step (one list per wave)."""
    return [_receipts_of_wave(wildcards, i) for i in range(krylov_wave_count(wildcards))]


def receipts_of_all_waves(wildcards):
    """All receipts of every Krylov wave of a step."""
    return [r for wave in receipts_by_wave(wildcards) for r in wave]


def _plan(wildcards, index):
    return f"{step_dir(wildcards.hset, wildcards.step)}/krylov/plan~{index}.json"


def npz(plan):
    """The arrays beside a Krylov plan."""
    return plan.replace(".json", ".npz")


def earlier_plans(wildcards):
    """The plans of the Krylov waves 1..index−1 (the waves before wave ``index`` but the first)."""
    return [_plan(wildcards, i) for i in range(1, int(wildcards.index))]


def earlier_plan_files(wildcards):
    """:func:`earlier_plans` with their arrays."""
    return [p for plan in earlier_plans(wildcards) for p in (plan, npz(plan))]


def plan_of_wave(wildcards):
    """The plan that wave ``index`` is formed from (wave 0 has none), with its arrays."""
    index = int(wildcards.index)
    return [] if index == 0 else [_plan(wildcards, index), npz(_plan(wildcards, index))]


def plans_of_reduction(wildcards):
    """The plans behind a step's Krylov waves: those of waves 1..p−1, and for an adaptive run
    the last plan too, the one that decided to stop."""
    count = krylov_wave_count(wildcards)
    last = count + 1 if ADAPTIVE else count
    return [_plan(wildcards, i) for i in range(1, last)]


def plan_files_of_reduction(wildcards):
    """:func:`plans_of_reduction` with their arrays."""
    return [p for plan in plans_of_reduction(wildcards) for p in (plan, npz(plan))]


def certificate_of(wildcards):
    """The certificate of a decomposition (the exact one needs none)."""
    if wildcards.method == "exact":
        return []
    return f"{step_dir(wildcards.hset, wildcards.step)}/method~sketched/certificate.json"
