"""The workflow through a real SLURM cluster with profiles/slurm.

Needs a running cluster with partitions `cpu` and `gpu` and fake GPUs, as started by
tools/slurm/start-slurm.sh (`.ci/run` does that); without one the module is skipped.
The cluster has no accounting database, so Snakemake gets the test-only flags
``--slurm-status-command squeue --slurm-init-seconds-before-status-checks 2``.
Every Snakemake call runs under a hard timeout and is SIGKILLed when it runs over: the SLURM
plugin can wait forever when it loses track of its jobs (see the last test).

The study has 8 measurement shards per Hessian, and the profile submits the shards of a rule as
SLURM job arrays (`slurm-array-jobs`): the shards of one Hessian go out as one `sbatch --array`,
whose tasks Snakemake tracks as ``<array job id>_<task id>``. The guards of the plugin that
workflow/rules/scheduler.smk installs are tested without a cluster in test_scheduler_guard.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
import zarr
from idx_files import write_fake_mnist

from hessketch.pipeline.common import read_table

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv of this pytest: snakemake + the SLURM plugin
SNAKEMAKE = BIN / "snakemake"
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
RUN = f"results/{TINY['run']}"
# Test-only settings for a cluster without slurmdbd; they stay out of profiles/slurm.
SLURM_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]
LOCAL_RULES = {"create_sketch_store", "all"}  # common.smk's localrules + the target rule
PLOT_RULES = {
    "plot_overlap_over_training",
    "plot_overlap_vs_k",
    "plot_spectra",
    "plot_spectral_density",  # tests/configs/tiny.yaml has density.enabled
    "plot_training_curves",
}
GPU_RULES = {"measure_sketch_shard", "measure_wave_shard", "spectral_density"}
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
ARRAY_RULES = set(PROFILE["slurm-array-jobs"].split(","))  # submitted as job arrays
SHARD_RULES = {"measure_sketch_shard", "measure_wave_shard"}  # scattered: sketch.shards each
SHARDS = 8  # measurement shards per Hessian (sketch.shards)
RUN_TIMEOUT = 1200  # seconds for one full run; the study below takes 10–12 min on 2 cores
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def _cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo); start a cluster with tools/slurm/start-slurm.sh"
    if (
        not SNAKEMAKE.exists()
        or importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
    ):
        return f"snakemake with the SLURM executor plugin is not installed next to {sys.executable}"
    try:
        info = subprocess.run(
            ["sinfo", "-h", "-o", "%P %a %t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: the SLURM controller does not answer"
    if info.returncode != 0:
        return f"no SLURM cluster is up ({info.stderr.strip()}); see tools/slurm/start-slurm.sh"
    states = {}
    for line in info.stdout.splitlines():
        partition, avail, state = line.split()
        if avail == "up" and state in ("idle", "mix", "alloc", "comp"):
            states[partition.rstrip("*")] = state
    missing = {"cpu", "gpu"} - set(states)
    if missing:
        return f"the SLURM cluster has no usable partition {sorted(missing)} (sinfo: {info.stdout})"
    return None


_problem = _cluster_problem()
if _problem:
    pytest.skip(_problem, allow_module_level=True)

pytestmark = pytest.mark.slurm


# --------------------------------------------------------------------------- helpers
@dataclass
class Run:
    """One finished (or killed) Snakemake call."""

    returncode: int
    output: str
    seconds: float


def _env() -> dict[str, str]:
    # The jobs inherit this environment (sbatch --export=ALL): the venv's bin comes first.
    # SLURM_* of an enclosing allocation would confuse the plugin.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Proc:
    """A running Snakemake: its process (leader of its own session) and its output file."""

    popen: subprocess.Popen
    log: Path
    started: float
    ended: float | None = None

    def running(self) -> bool:
        if self.ended is None and self.popen.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is None

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL the whole session (Snakemake may ignore SIGTERM while waiting for jobs)."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.running()


def start(workdir: Path, *args: str, profile: str = "slurm", log: str = "snakemake.out") -> Proc:
    """Start Snakemake in ``workdir`` with ``workdir/config.yaml``; output to ``workdir/log``."""
    cmd = [str(SNAKEMAKE), "--profile", str(REPO / "profiles" / profile)]
    cmd += ["-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir)]
    if profile == "slurm":
        cmd += SLURM_FLAGS
    cmd += [*args, "--configfile", str(workdir / "config.yaml")]  # last: takes several values
    with open(workdir / log, "w") as out:
        popen = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
    return Proc(popen, workdir / log, time.monotonic())


def finish(proc: Proc, timeout: float = RUN_TIMEOUT, poll=None) -> Run:
    """Wait for ``proc``, calling ``poll()`` every 2 s; past ``timeout`` kill it, cancel its
    SLURM jobs and fail the test."""
    while proc.running() and time.monotonic() < proc.started + timeout:
        if poll is not None:
            poll()
        try:
            proc.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    if proc.running():
        proc.kill()
        cancel(submitted(proc.output()))
        pytest.fail(f"snakemake ran over {timeout} s and was killed:\n{proc.output()[-4000:]}")
    if poll is not None:
        poll()
    return Run(proc.popen.returncode, proc.output(), proc.ended - proc.started)


def snakemake(workdir: Path, *args: str, profile: str = "slurm", timeout: float = RUN_TIMEOUT):
    return finish(start(workdir, *args, profile=profile), timeout)


def cancel(slurm_ids: dict[int, str]) -> None:
    """scancel the SLURM jobs (an array task's whole array) of ``submitted()``."""
    jobs = {slurm_id.split("_")[0] for slurm_id in slurm_ids.values()}
    if jobs:
        subprocess.run(["scancel", *sorted(jobs)], capture_output=True, timeout=30)


# What snakemake-executor-plugin-slurm 2.8.0 logs for one sbatch call (its run_job and
# run_array_jobs): a plain job, and a job array whose tasks are the listed Snakemake jobs in order.
PLAIN = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", re.M)
ARRAY = re.compile(
    r"^Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)\. "
    r"The individual task IDs are (\d+)-(\d+)\.",
    re.M,
)


def arrays(output: str) -> dict[str, list[int]]:
    """SLURM array job id → the Snakemake job ids of its tasks, in task order (one sbatch call
    each; more jobs than --slurm-array-limit go out as several arrays)."""
    found = {}
    for jobs, slurm_id, first, last in ARRAY.findall(output):
        ids = [int(job) for job in jobs.split(",")]
        assert len(ids) == int(last) - int(first) + 1, (jobs, first, last)
        found[slurm_id] = ids
    return found


def submitted(output: str) -> dict[int, str]:
    """Snakemake job id → SLURM id: "23" for a plain job, "23_4" for task 4 of array 23."""
    ids = {int(job): slurm for job, slurm in PLAIN.findall(output)}
    for jobs, slurm_id, first, _ in ARRAY.findall(output):
        for task, job in enumerate(jobs.split(","), start=int(first)):
            ids[int(job)] = f"{slurm_id}_{task}"
    return ids


def rules_of_jobs(output: str) -> dict[int, tuple[str, bool]]:
    """Snakemake job id → (rule, is a localrule), from the job headers of the log."""
    return {job: (rule, local) for job, (rule, local, _) in job_headers(output).items()}


def job_headers(output: str) -> dict[int, tuple[str, bool, dict[str, str]]]:
    """Snakemake job id → (rule, is a localrule, wildcards), from the job headers of the log."""
    jobs = {}
    for local, rule, body in re.findall(r"^(local)?rule (\w+):\n((?:    .*\n)+)", output, re.M):
        jobid = re.search(r"^    jobid: (\d+)$", body, re.M)
        wildcards = re.search(r"^    wildcards: (.*)$", body, re.M)
        if jobid:
            pairs = wildcards.group(1).split(", ") if wildcards else []
            jobs[int(jobid.group(1))] = (rule, bool(local), dict(p.split("=", 1) for p in pairs))
    return jobs


def slurm_jobs_per_rule(output: str) -> dict[str, list[str]]:
    """Rule → SLURM ids (plain jobs and array tasks) of one run."""
    rules = rules_of_jobs(output)
    per_rule: dict[str, list[str]] = {}
    for job, slurm_id in submitted(output).items():
        per_rule.setdefault(rules[job][0], []).append(slurm_id)
    return per_rule


def planned(output: str) -> dict[str, int]:
    """Rule → job count from the 'Job stats' table (without `all`; empty if nothing to do)."""
    table = output.split("Job stats:")
    counts = {}
    if len(table) > 1:
        for line in table[1].splitlines()[3:]:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if not m:
                break
            if m.group(1) not in ("all", "total"):
                counts[m.group(1)] = int(m.group(2))
    return counts


def dry_run(workdir: Path, config: dict) -> dict[str, int]:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(workdir, "-n", timeout=120)
    assert run.returncode == 0, run.output[-3000:]
    return planned(run.output)


def scontrol_jobs(slurm_id: str) -> list[dict[str, str]]:
    """`scontrol -d show job` as key → value, one per job: an array's tasks each (those not yet
    started folded into one, ArrayTaskId=2-8); finished jobs stay MinJobAge=300 s."""
    out = subprocess.run(
        ["scontrol", "-d", "-o", "show", "job", str(slurm_id)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [
        dict(item.split("=", 1) for item in line.split() if "=" in item)
        for line in out.splitlines()
        if line.strip()
    ]


def record_slurm_jobs(output: str, info: dict[str, dict[str, str]]) -> None:
    """Add to ``info`` (SLURM id → scontrol fields) the jobs and array tasks of ``output``
    while slurmctld shows them: a plain job once, an array task until it has ended."""
    pending = set()
    for slurm_id in submitted(output).values():
        known = info.get(slurm_id)
        if known is None or ("_" in slurm_id and known.get("JobState") not in TERMINAL):
            pending.add(slurm_id.split("_")[0])
    for base in sorted(pending):
        for job in scontrol_jobs(base):
            task = job.get("ArrayTaskId", "")
            if task.isdigit():  # one task of its own (the not yet started ones are folded)
                info[f"{job['ArrayJobId']}_{task}"] = job
            elif "ArrayJobId" not in job:
                info[base] = job


def with_changes(config: dict, **changes: dict) -> dict:
    new = json.loads(json.dumps(config))
    for section, values in changes.items():
        new.setdefault(section, {}).update(values)
    return new


# --------------------------------------------------------------------------- fixtures
@dataclass
class Study:
    workdir: Path
    config: dict
    run: Run
    jobs: dict[str, list[str]]  # rule → SLURM ids ("23", or "23_4": task 4 of array 23)
    scontrol: dict[str, dict[str, str]]  # SLURM id → scontrol fields, read during the run


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_fake_mnist(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def config(data_root: str) -> dict:
    # 8 shards: the shards of a Hessian go out as one job array. One Hessian set and one step
    # (the two-set, two-step chains are covered locally, tests/test_workflow.py) keep the run
    # about as long as it was with 2 shards and two steps.
    steps = [TINY["hessian"]["steps"][-1]]
    return with_changes(
        TINY,
        data={"root": data_root},
        hessian={"sets": {"train": 50}, "steps": steps},
        sketch={"shards": SHARDS},
        exact={"steps": steps},
        plots={"steps_vs_k": steps},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, config: dict) -> tuple[Study, Path]:
    """The tiny study through SLURM and, at the same time, locally (2 cores) for comparison.

    Side by side they take about a minute less than one after the other on 2 cores.
    """
    slurm_dir, local_dir = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("local")
    for workdir in (slurm_dir, local_dir):
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    info: dict[str, dict[str, str]] = {}

    def record_new_jobs() -> None:  # while they are fresh in slurmctld (MinJobAge)
        local.running()  # notes when it ended
        record_slurm_jobs(proc.output(), info)

    local = start(local_dir, "--cores", "2", profile="default")
    try:
        proc = start(slurm_dir)
        run = finish(proc, poll=record_new_jobs)
    finally:
        local_run = finish(local)
    assert run.returncode == 0, run.output[-6000:]
    assert local_run.returncode == 0, local_run.output[-6000:]
    jobs = slurm_jobs_per_rule(run.output)
    print(f"\nSLURM run {run.seconds:.0f} s (local run alongside: {local_run.seconds:.0f} s)")
    print("SLURM jobs per rule:", {rule: ids for rule, ids in sorted(jobs.items())})
    print("SLURM job arrays:", arrays(run.output))
    return Study(slurm_dir, config, run, jobs, info), local_dir


@pytest.fixture(scope="module")
def study(runs: tuple[Study, Path]) -> Study:
    return runs[0]


# --------------------------------------------------------------------------- (a) jobs
def test_every_rule_but_the_localrules_ran_as_a_slurm_job(study: Study) -> None:
    output = study.run.output
    rules = rules_of_jobs(output)
    jobs = submitted(output)
    assert rules and jobs, output[-3000:]
    for job, (rule, local) in rules.items():
        if local:
            assert rule in LOCAL_RULES and job not in jobs, (job, rule)
        else:
            assert job in jobs, f"job {job} ({rule}) was not submitted to SLURM"
    assert {rule for rule, local in rules.values() if local} == LOCAL_RULES
    # one SLURM job or array task per planned job, none retried
    counts = {rule: len(ids) for rule, ids in study.jobs.items()}
    expected = {rule: n for rule, n in planned(output).items() if rule not in LOCAL_RULES}
    assert counts == expected
    assert "Trying to restart job" not in output
    assert len(set(jobs.values())) == len(jobs)
    # only the profile's array rules went out as arrays (a single ready job: a plain job)
    for rule, ids in study.jobs.items():
        if rule not in ARRAY_RULES:
            assert all("_" not in slurm_id for slurm_id in ids), (rule, ids)


def test_the_shards_of_a_hessian_went_out_as_one_job_array(study: Study) -> None:
    output = study.run.output
    headers, ids, sbatch_arrays = job_headers(output), submitted(output), arrays(output)
    assert sbatch_arrays, "no job array was submitted:\n" + output[-3000:]
    for rule in SHARD_RULES:
        per_hessian: dict[tuple, list[str]] = {}  # (set, step, wave) → SLURM ids of its shards
        for job, (name, _, wildcards) in headers.items():
            if name == rule:
                hessian = tuple(v for k, v in sorted(wildcards.items()) if k != "scatteritem")
                per_hessian.setdefault(hessian, []).append(ids[job])
        assert per_hessian, rule
        for hessian, slurm_ids in per_hessian.items():
            assert len(slurm_ids) == SHARDS, (rule, hessian, slurm_ids)
            array_ids = {slurm_id.split("_")[0] for slurm_id in slurm_ids}
            assert len(array_ids) == 1 and all("_" in i for i in slurm_ids), (rule, slurm_ids)
            (array,) = array_ids
            assert array in sbatch_arrays, (rule, array)  # one sbatch call: "Submitted array…"
            members = {headers[job][0] for job in sbatch_arrays[array]}
            assert members == {rule}, (array, members)
            # slurmctld agrees: the tasks of that array, each its own job
            for slurm_id in slurm_ids:
                task = study.scontrol.get(slurm_id)
                assert task, f"scontrol never showed array task {slurm_id} ({rule})"
                assert f"{task['ArrayJobId']}_{task['ArrayTaskId']}" == slurm_id, task
                assert task["JobState"] == "COMPLETED", task


def test_measurement_jobs_ran_in_the_gpu_partition_with_a_gpu(study: Study) -> None:
    for rule, ids in study.jobs.items():
        for slurm_id in ids:  # plain jobs and each task of an array
            job = study.scontrol.get(slurm_id)
            assert job, f"scontrol never showed SLURM job {slurm_id} ({rule})"
            gres = job.get("TresPerJob", "") + job.get("JOB_GRES", "")
            if rule in GPU_RULES:
                assert job["Partition"] == "gpu", (rule, job)
                assert "gpu:1" in gres, (rule, job)
            else:
                assert job["Partition"] == "cpu", (rule, job)
                assert "gpu" not in gres, (rule, job)


def test_measurement_jobs_see_their_gpu(study: Study) -> None:
    receipts = sorted((study.workdir / RUN).glob("hessian/set~*/step~*/receipts/*.json"))
    measure_ids = study.jobs["measure_sketch_shard"]
    assert len(receipts) == len(measure_ids)
    # an array task is a job of its own: SLURM_JOB_ID is the task's, the array's id and the
    # task's index are SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID (scontrol: ArrayJobId, ...)
    by_job_id = {job["JobId"]: slurm_id for slurm_id, job in study.scontrol.items()}
    seen = []
    for path in receipts:
        receipt = json.loads(path.read_text())
        if "environment" not in receipt:
            pytest.skip("the shard receipts do not record the scheduler environment")
        env = receipt["environment"]  # what the shard saw, inside the job step
        assert env.get("CUDA_VISIBLE_DEVICES") not in (None, ""), (path, env)
        slurm_id = by_job_id.get(env["SLURM_JOB_ID"])
        assert slurm_id is not None, (path, env, sorted(by_job_id))
        if "_" in slurm_id:  # an array task
            assert slurm_id == f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}", env
        # the jobstep plugin runs an array task's rule without srun and strips the SLURM_*
        # variables but the job's and the array's ids: there the partition is slurmctld's word
        partition = env.get("SLURM_JOB_PARTITION", study.scontrol[slurm_id]["Partition"])
        assert partition == "gpu", (path, env)
        seen.append(slurm_id)
    assert sorted(seen) == sorted(measure_ids)  # every shard saw its own task, each one a GPU


# --------------------------------------------------------------------------- (b) results
def test_results_equal_a_local_run(runs: tuple[Study, Path]) -> None:
    study, local_dir = runs
    slurm_run, local_run = study.workdir / RUN, local_dir / RUN
    stores = sorted(
        p.relative_to(slurm_run) for p in slurm_run.glob("hessian/set~*/step~*/sketch.zarr")
    )
    assert len(stores) == len(study.config["hessian"]["steps"])
    for store in stores:
        a, b = (
            zarr.open_group(slurm_run / store, mode="r"),
            zarr.open_group(local_run / store, mode="r"),
        )
        for name in ("Y", "Z", "PhiY", "HOmega"):
            x, y = a[name][...], b[name][...]
            assert x.dtype == y.dtype and x.shape == y.shape, (store, name)
            assert x.tobytes() == y.tobytes(), f"{store}/{name} differs"
    for eigenpairs in sorted(slurm_run.glob("hessian/set~*/step~*/method~sketched/eigenpairs.h5")):
        with (
            h5py.File(eigenpairs) as f,
            h5py.File(local_run / eigenpairs.relative_to(slurm_run)) as g,
        ):
            np.testing.assert_allclose(f["eigenvalues"][:], g["eigenvalues"][:], rtol=1e-6, atol=0)
    tables = sorted(slurm_run.glob("hessian/set~*/step~*/method~*/overlap.tsv"))
    assert len(tables) == len(study.jobs["compute_overlap"])
    for table in tables:
        x, y = read_table(table), read_table(local_run / table.relative_to(slurm_run))
        assert x.keys() == y.keys()
        for column in x:
            if x[column].dtype.kind in "US":  # verdicts: the same words
                np.testing.assert_array_equal(x[column], y[column], err_msg=str(table))
            else:
                np.testing.assert_allclose(
                    x[column], y[column], rtol=1e-6, atol=0, err_msg=str(table)
                )


# --------------------------------------------------------------------------- (c) reruns
# In file order: the sketch-size dry run must see the workdir before the plot rerun.
def test_nothing_to_do_after_the_run(study: Study) -> None:
    assert dry_run(study.workdir, study.config) == {}


def test_sketch_size_reruns_the_sketch_branch_only(study: Study) -> None:
    sketch, report_k = study.config["sketch"], study.config["overlap"]["report_k"]
    k = sketch["k"] - 8
    changed = with_changes(
        study.config, sketch={"k": k, "s": 2 * k}, overlap={"report_k": min(k, report_k)}
    )
    jobs = dry_run(study.workdir, changed)
    steps = len(study.config["hessian"]["steps"])
    # the exact overlaps depend on the sketch only through overlap.report_k
    exact = len(study.config["exact"]["steps"]) if k < report_k else 0
    assert jobs["create_sketch_store"] == steps
    assert jobs["measure_sketch_shard"] == steps * sketch["shards"]
    assert jobs["reduce_sketch"] == steps
    assert jobs["compute_overlap"] == steps + exact
    assert {"plot_overlap_over_training", "plot_overlap_vs_k", "plot_spectra"} <= set(jobs)
    assert not {"train_model", "exact_hessian", "plot_training_curves"} & set(jobs)
    (study.workdir / "config.yaml").write_text(yaml.safe_dump(study.config))


def test_plot_style_reruns_only_the_plots_through_slurm(study: Study) -> None:
    restyled = with_changes(study.config, plots={"style": {"dpi": 80}})
    (study.workdir / "config.yaml").write_text(yaml.safe_dump(restyled))
    reports = study.workdir / "efficiency"
    rerun = snakemake(
        study.workdir, "--slurm-efficiency-report", "--slurm-efficiency-report-path", str(reports)
    )
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert planned(rerun.output) == dict.fromkeys(PLOT_RULES, 1)
    jobs = slurm_jobs_per_rule(rerun.output)
    print(f"\nplot rerun through SLURM: {rerun.seconds:.0f} s, SLURM jobs {jobs}")
    assert {rule: len(ids) for rule, ids in jobs.items()} == dict.fromkeys(PLOT_RULES, 1)
    # the efficiency report reads sacct at the end of the run: without slurmdbd (this cluster's
    # default) it is skipped with an error line, and the run still succeeds
    (run_id,) = re.findall(r"^SLURM run ID: (\S+)$", rerun.output, re.M)
    csv = reports / f"efficiency_report_{run_id}.csv"
    sacct = subprocess.run(["sacct", "-n", "-X"], capture_output=True, text=True, timeout=30)
    if sacct.returncode != 0:  # "Slurm accounting storage is disabled"
        assert f"Failed to retrieve job data for workflow {run_id}" in rerun.output
        assert not csv.exists()
    else:
        assert csv.exists(), rerun.output[-3000:]  # a row per job step, from sacct


# --------------------------------------------------------------------------- (d) failures
def _slurm_run_dir() -> Path:
    """Where start-slurm.sh recorded its daemons' PIDs."""
    if os.environ.get("SLURM_RUN_DIR"):
        return Path(os.environ["SLURM_RUN_DIR"])
    pointer = Path("/run/slurm/start-slurm.rundir")
    return Path(pointer.read_text().strip()) if pointer.exists() else Path("/tmp/hessketch-slurm")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_lost_controller_ends_the_run_with_a_clear_error(
    tmp_path: Path, config: dict, study: Study
) -> None:
    """Stop slurmctld right after the first submission: the run must end with a clear error.

    snakemake-executor-plugin-slurm 2.8.0 alone would hang: when one status check fails
    `--slurm-status-attempts` times in a row (with the controller down it even switches to
    sacct, which cannot work without slurmdbd), it drops the active jobs without reporting
    them, and Snakemake waits forever, also after the controller is back and on SIGTERM.
    workflow/rules/scheduler.smk turns the failed check into an error; this test pins it.
    """
    bound = 90  # seconds after the controller stopped
    run_dir = _slurm_run_dir()
    pid_file = run_dir / "pids" / "slurmctld.pid"
    if os.geteuid() != 0 or not pid_file.exists():
        pytest.skip(f"needs root and a cluster from tools/slurm/start-slurm.sh ({pid_file})")
    pid = int(pid_file.read_text())
    if not _alive(pid) or Path(f"/proc/{pid}/comm").read_text().strip() != "slurmctld":
        pytest.skip(f"{pid_file} names no running slurmctld")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = start(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not submitted(proc.output()):
            assert proc.running() and time.monotonic() < deadline, proc.output()[-3000:]
            time.sleep(0.5)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped = time.monotonic()
        while proc.running() and time.monotonic() < stopped + bound:
            time.sleep(0.5)
        waited = time.monotonic() - stopped
        exited = not proc.running()
    finally:
        proc.kill()
        restart = subprocess.run(
            ["bash", str(REPO / "tools" / "slurm" / "start-slurm.sh"), str(run_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = proc.output()
        cancel(submitted(output))
    assert restart.returncode == 0, restart.stderr
    print(f"\nrun ended {waited:.0f} s after slurmctld stopped")
    assert exited, f"snakemake still ran {waited:.0f} s after slurmctld stopped:\n{output[-3000:]}"
    assert proc.popen.returncode != 0
    assert "steps (100%) done" not in output
    assert "the scheduler cannot be reached" in output, output[-3000:]
