"""The guards of workflow/rules/scheduler.smk against the installed SLURM plugin (no cluster).

hessketch.slurm_guard wraps three names of snakemake-executor-plugin-slurm: ``query_job_status``
(a fully failed status check ends the run instead of a silent hang, plugin issue #207),
``pending_jobs_for_rule`` (a job-array batch is never held back and lost, issue #473) and
``Executor._submit_array_jobs`` (one array per resource request). These tests fail when the
installed plugin moves or renames one of them, changes its signature, or stops calling it
through the name that is wrapped (the wrap would then silently do nothing), and they drive the
plugin's own ``check_active_jobs`` and ``run_jobs`` with the guards in place.

After a plugin upgrade (test_the_plugin_is_the_verified_version fails), re-check, in the
plugin's source (snakemake_executor_plugin_slurm/__init__.py and job_status_query.py):
  1. check_active_jobs still calls ``query_job_status(command, logger)`` from the package
     namespace and still drops its jobs when every attempt returns (None, None) — if #207 is
     fixed (test_without_the_guard_a_failed_check_drops_the_jobs fails), the guard may go;
  2. run_jobs still skips a batch smaller than ``pending_jobs_for_rule(dag, rule)`` — if #473 is
     fixed (test_without_the_guard_a_partial_batch_is_dropped fails), that guard may go;
  3. run_array_jobs still takes jobs[0]'s resources for the whole array;
  4. array tasks are still tracked as ``<jobid>_<taskid>`` and announced with "Submitted array
     job with Snakemake IDs ... and SLURM job ID ..." (tests/test_slurm.py parses that line);
  5. set_gres_string still turns ``gpu_model`` + ``gpu`` into ``--gpus=<model>:<n>``;
then set hessketch.slurm_guard.VERIFIED_PLUGIN_VERSION to the new version.
"""

from __future__ import annotations

import asyncio
import dis
import importlib
import importlib.metadata
import inspect
import pkgutil
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hessketch import slurm_guard

plugin = pytest.importorskip("snakemake_executor_plugin_slurm")

REPO = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
TYPED = yaml.safe_load((REPO / "profiles" / "slurm-typed-gpu" / "config.yaml").read_text())
GPU_RULES = {"measure_sketch_shard", "measure_wave_shard", "spectral_density"}


class FakeWorkflowError(Exception):
    pass


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch):
    """The plugin with the guards installed for one test (restored afterwards)."""
    for name in ("query_job_status", "pending_jobs_for_rule"):
        monkeypatch.setattr(plugin, name, getattr(plugin, name))
    monkeypatch.setattr(plugin.Executor, "_submit_array_jobs", plugin.Executor._submit_array_jobs)
    return lambda attempts=3: slurm_guard.install(plugin, lambda: attempts, FakeWorkflowError)


# --------------------------------------------------------------------------- where they are
def test_the_plugin_is_the_verified_version() -> None:
    installed = importlib.metadata.version("snakemake-executor-plugin-slurm")
    assert installed == slurm_guard.VERIFIED_PLUGIN_VERSION, (
        f"snakemake-executor-plugin-slurm {installed} is installed, the guards in "
        f"hessketch.slurm_guard were verified against {slurm_guard.VERIFIED_PLUGIN_VERSION}: "
        "re-check the five points of this module's docstring, then update "
        "VERIFIED_PLUGIN_VERSION"
    )


def _functions(module: types.ModuleType):
    """Every function and method defined in ``module``, with its qualified name."""
    for _, obj in inspect.getmembers(module):
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            yield obj.__qualname__, obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for _, member in inspect.getmembers(obj, inspect.isfunction):
                if member.__module__ == module.__name__:
                    yield member.__qualname__, member


def _codes(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _uses(name: str) -> dict[str, set[str]]:
    """Qualified name → how it loads ``name`` (LOAD_GLOBAL, LOAD_ATTR, …), over the plugin."""
    modules = [plugin]
    for info in pkgutil.iter_modules(plugin.__path__):
        modules.append(importlib.import_module(f"{plugin.__name__}.{info.name}"))
    uses: dict[str, set[str]] = {}
    for module in modules:
        for qualname, function in _functions(module):
            for code in _codes(function.__code__):
                for op in dis.get_instructions(code):
                    if op.argval == name and op.opname.startswith("LOAD"):
                        uses.setdefault(f"{module.__name__}:{qualname}", set()).add(op.opname)
    return uses


def test_query_job_status_is_where_the_guard_wraps_it() -> None:
    from snakemake_executor_plugin_slurm import job_status_query

    query = plugin.query_job_status
    assert query is job_status_query.query_job_status  # the package re-exports the original
    assert inspect.iscoroutinefunction(query)
    assert list(inspect.signature(query).parameters) == ["command", "logger"]


def test_the_plugin_calls_query_job_status_through_its_package() -> None:
    # the only caller is Executor.check_active_jobs, looking the name up in the package's
    # globals at call time: replacing plugin.query_job_status replaces what it calls
    uses = _uses("query_job_status")
    assert uses == {f"{plugin.__name__}:Executor.check_active_jobs": {"LOAD_GLOBAL"}}, uses
    check = plugin.Executor.check_active_jobs
    assert check.__globals__ is vars(plugin)
    assert "await query_job_status(\n                    status_command, self.logger" in (
        inspect.getsource(check)
    ), "check_active_jobs no longer calls query_job_status(status_command, self.logger)"


def test_pending_jobs_for_rule_is_where_the_guard_replaces_it() -> None:
    assert list(inspect.signature(plugin.pending_jobs_for_rule).parameters) == ["dag", "rule_name"]
    uses = _uses("pending_jobs_for_rule")
    assert uses == {f"{plugin.__name__}:Executor.run_jobs": {"LOAD_GLOBAL"}}, uses
    assert plugin.Executor.run_jobs.__globals__ is vars(plugin)


def test_submit_array_jobs_is_where_the_guard_wraps_it() -> None:
    submit = plugin.Executor._submit_array_jobs
    assert list(inspect.signature(submit).parameters) == ["self", "jobs"]
    source = inspect.getsource(plugin.Executor.run_jobs)
    assert "self._submit_array_jobs(same_rule_jobs)" in source  # looked up on the instance
    assert "self._submit_job(" in source
    # the whole array takes the first job's resources (what split_by_resources is for)
    assert "get_submit_command(\n                jobs[0]," in inspect.getsource(
        plugin.Executor.run_array_jobs
    )


def test_scheduler_smk_installs_the_guards(guarded) -> None:
    """scheduler.smk is plain Python: run it as Snakemake would, with a fake workflow."""
    source = (REPO / "workflow" / "rules" / "scheduler.smk").read_text()
    settings = SimpleNamespace(status_attempts=2)
    namespace = {
        "workflow": SimpleNamespace(executor_settings=settings),
        "WorkflowError": FakeWorkflowError,
    }
    exec(compile(source, "scheduler.smk", "exec"), namespace)
    assert getattr(plugin.query_job_status, slurm_guard.MARK)
    assert plugin.pending_jobs_for_rule is slurm_guard.no_pending_jobs
    assert getattr(plugin.Executor._submit_array_jobs, slurm_guard.MARK)
    exec(compile(source, "scheduler.smk", "exec"), namespace)  # twice: nothing wraps twice
    assert plugin.query_job_status.__wrapped__ is plugin.job_status_query.query_job_status


# --------------------------------------------------------------------------- the status guard
def _failing(calls: list):
    async def query(command, logger):
        calls.append(command)
        return None, None

    return query


def test_the_guard_raises_after_the_attempts_and_passes_results_through() -> None:
    calls: list[str] = []
    guard = slurm_guard.guard_status_query(_failing(calls), lambda: 3, FakeWorkflowError)
    for _ in range(2):
        assert asyncio.run(guard("squeue --name x", None)) == (None, None)
    with pytest.raises(FakeWorkflowError, match=r"failed 3 times in a row.*cannot be reached"):
        asyncio.run(guard("squeue --name x", None))
    assert len(calls) == 3

    results = iter([(None, None), (None, None), ({"7_1": "RUNNING"}, 0.01), (None, None)])

    async def flaky(command, logger):
        return next(results)

    guard = slurm_guard.guard_status_query(flaky, lambda: 3, FakeWorkflowError)
    outcomes = [asyncio.run(guard("c", None)) for _ in range(4)]  # a success resets the count
    assert outcomes == [(None, None), (None, None), ({"7_1": "RUNNING"}, 0.01), (None, None)]


def _executor(attempts: int = 3) -> SimpleNamespace:
    """Just enough of an Executor for the plugin's check_active_jobs."""

    class Limiter:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

    settings = SimpleNamespace(
        init_seconds_before_status_checks=2,
        status_attempts=attempts,
        keep_successful_logs=True,
        requeue=False,
    )
    executor = SimpleNamespace(
        workflow=SimpleNamespace(executor_settings=settings),
        logger=SimpleNamespace(debug=print, info=print, warning=print, error=print),
        run_uuid="run-uuid",
        status_rate_limiter=Limiter(),
        get_status_command=lambda: "squeue",
        next_seconds_between_status_checks=2,
        _status_query_calls=0,
        _status_query_failures=0,
        _status_query_total_seconds=0.0,
        _status_query_min_seconds=None,
        _status_query_max_seconds=0.0,
        _status_query_cycle_rows=[],
        _preemption_warning=False,
        succeeded=[],
        failed=[],
    )
    executor.report_job_success = executor.succeeded.append
    executor.report_job_error = lambda job, msg=None, **kw: executor.failed.append((job, msg))
    return executor


def _check(executor: SimpleNamespace, jobs: list) -> list:
    async def collect():
        return [j async for j in plugin.Executor.check_active_jobs(executor, jobs)]

    return asyncio.run(collect())


def _task(external_jobid: str) -> SimpleNamespace:
    return SimpleNamespace(external_jobid=external_jobid, aux={}, job=None)


@pytest.fixture
def squeue_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Status by squeue, as on the CI cluster (no scontrol or sacct calls in these tests)."""
    monkeypatch.setattr(plugin, "get_min_job_age", lambda: 300)
    monkeypatch.setattr(plugin, "is_query_tool_available", lambda tool: tool == "squeue")


def test_without_the_guard_a_failed_check_drops_the_jobs(
    monkeypatch: pytest.MonkeyPatch, squeue_only
) -> None:
    """The plugin's bug #207 that the guard exists for: if this fails, re-check the guard."""
    calls: list[str] = []
    monkeypatch.setattr(plugin, "query_job_status", _failing(calls))
    executor = _executor(attempts=3)
    assert _check(executor, [_task("7_1"), _task("8")]) == []  # neither reported nor kept
    assert executor.succeeded == executor.failed == []
    assert len(calls) == 3 and calls[0].startswith("squeue ")


def test_with_the_guard_a_failed_check_ends_the_run(
    monkeypatch: pytest.MonkeyPatch, guarded, squeue_only
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(plugin, "query_job_status", _failing(calls))
    guarded(attempts=3)
    with pytest.raises(FakeWorkflowError, match="the scheduler cannot be reached"):
        _check(_executor(attempts=3), [_task("7_1")])
    assert len(calls) == 3


def test_with_the_guard_array_task_states_pass_through(
    monkeypatch: pytest.MonkeyPatch, guarded, squeue_only
) -> None:
    # squeue lists running/finished tasks as <jobid>_<taskid>, pending ones folded: 7_[3-8]
    states = {"7_1": "COMPLETED", "7_2": "RUNNING", "7_[3-8]": "PENDING", "9": "FAILED"}

    async def query(command, logger):
        return dict(states), 0.01

    monkeypatch.setattr(plugin, "query_job_status", query)
    guarded(attempts=3)
    executor = _executor()
    tasks = {name: _task(name) for name in ("7_1", "7_2", "7_3", "9")}
    still_active = _check(executor, list(tasks.values()))
    assert still_active == [tasks["7_2"], tasks["7_3"]]
    assert executor.succeeded == [tasks["7_1"]]
    assert [job for job, _ in executor.failed] == [tasks["9"]]


# --------------------------------------------------------------------------- the array guards
def _job(rule: str, jobid: int, mem_mb: int = 3000, attempt: int = 1) -> SimpleNamespace:
    resources = {"mem_mb": mem_mb * attempt, "runtime": 60 * attempt, "gpu": 1}
    return SimpleNamespace(
        jobid=jobid,
        name=rule,
        rule=SimpleNamespace(name=rule),
        threads=1,
        resources=resources,
        is_group=lambda: False,
    )


def _array_executor(ready: list) -> SimpleNamespace:
    executor = SimpleNamespace(
        _main_event_loop=object(),
        array_jobs={"measure_sketch_shard"},
        max_array_size=1000,
        logger=SimpleNamespace(debug=print, warning=print),
        workflow=SimpleNamespace(dag=SimpleNamespace(ready_jobs=list(ready))),
        single=[],
        arrays=[],
    )
    executor._submit_job = executor.single.append
    executor._submit_array_jobs = lambda jobs: executor.arrays.append(list(jobs))
    return executor


def test_without_the_guard_a_partial_batch_is_dropped() -> None:
    """The plugin's bug #473 that the guard exists for: if this fails, re-check the guard."""
    shards = [_job("measure_sketch_shard", i) for i in range(8)]
    # the scheduler selected 3 of 8 ready shards (jobs limit) and counts them as running
    executor = _array_executor(ready=shards[3:])
    plugin.Executor.run_jobs(executor, shards[:3])
    assert executor.single == executor.arrays == []  # never submitted
    executor = _array_executor(ready=shards[1:])
    plugin.Executor.run_jobs(executor, shards[:1])
    assert executor.single == executor.arrays == []


def test_with_the_guard_every_selected_batch_is_submitted(guarded) -> None:
    guarded()
    shards = [_job("measure_sketch_shard", i) for i in range(8)]
    plots = [_job("plot_spectra", 100)]
    executor = _array_executor(ready=shards[3:])
    plugin.Executor.run_jobs(executor, shards[:3] + plots)
    assert executor.arrays == [shards[:3]]
    assert executor.single == plots  # not an array rule
    executor = _array_executor(ready=shards[1:])
    plugin.Executor.run_jobs(executor, shards[:1])
    assert executor.single == shards[:1] and executor.arrays == []  # one job: a plain job
    executor = _array_executor(ready=[])
    plugin.Executor.run_jobs(executor, shards)
    assert executor.arrays == [shards]  # all shards of a Hessian: one array


def test_with_the_guard_an_array_holds_one_resource_request(guarded) -> None:
    guarded()
    fresh = [_job("measure_sketch_shard", i) for i in range(4)]
    retried = [_job("measure_sketch_shard", 10, attempt=2)]  # asks for more memory and time
    larger_set = [_job("measure_sketch_shard", 20 + i, mem_mb=5000) for i in range(2)]
    batch = [fresh[0], retried[0], larger_set[0], *fresh[1:], larger_set[1]]
    submitted = []
    executor = SimpleNamespace(
        single=[],
        run_job_pre=lambda job: None,
        run_array_jobs=object(),
        _job_submission_executor=SimpleNamespace(submit=lambda fn, jobs: submitted.append(jobs)),
    )
    executor._submit_job = executor.single.append
    plugin.Executor._submit_array_jobs(executor, batch)
    assert submitted == [fresh, larger_set]
    assert executor.single == retried


# --------------------------------------------------------------------------- typed GPUs
def test_the_typed_gpu_profile_only_adds_gpu_model() -> None:
    assert set(TYPED) == {"set-resources"}  # the rest comes from profiles/slurm
    base, typed = PROFILE["set-resources"], TYPED["set-resources"]
    assert set(typed) == {rule for rule, res in base.items() if res.get("gpu")} == GPU_RULES
    for rule in GPU_RULES:
        extra = {k: v for k, v in typed[rule].items() if k not in base[rule]}
        assert {k: typed[rule][k] for k in base[rule]} == base[rule], rule
        assert set(extra) == {"gpu_model"}, rule
    # a later --profile replaces whole keys: rules without GPUs must have nothing to lose
    assert {rule for rule in base if rule not in typed} == set()


def _sbatch(resources: dict) -> str:
    """The sbatch call the plugin builds for a job with ``resources`` (no submission)."""
    job = SimpleNamespace(
        resources=SimpleNamespace(**resources, get=resources.get),
        threads=1,
        name="measure_sketch_shard",
    )
    params = {
        "run_uuid": "run-uuid",
        "slurm_logfile": "/logs/%A_%a.log",
        "comment_str": "rule_measure_sketch_shard",
        "account": "",
        "partition": f" -p {resources['slurm_partition']}",
        "workdir": "/work",
    }
    settings = SimpleNamespace(requeue=False, no_requeue=False, qos=None, reservation=None)
    return plugin.get_submit_command(job, params, settings=settings) + plugin.set_gres_string(job)


@pytest.mark.parametrize("rule", sorted(GPU_RULES))
def test_the_typed_gpu_profile_submits_gpus_of_its_model(rule: str) -> None:
    model = TYPED["set-resources"][rule]["gpu_model"]
    typed = _sbatch({**TYPED["set-resources"][rule], "mem_mb": 3000, "runtime": 60})
    assert f"--gpus={model}:1" in typed.split() and "-p gpu" in typed, typed
    untyped = _sbatch({**PROFILE["set-resources"][rule], "mem_mb": 3000, "runtime": 60})
    assert "--gpus=1" in untyped.split() and model not in untyped, untyped
