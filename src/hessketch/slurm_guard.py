"""Guards around snakemake-executor-plugin-slurm that keep a SLURM run from waiting forever.

``workflow/rules/scheduler.smk`` installs them (:func:`install`) when the plugin is importable;
outside a SLURM run they change nothing. Each wraps one name of the plugin's package namespace
(``snakemake_executor_plugin_slurm``), verified against the plugin version
:data:`VERIFIED_PLUGIN_VERSION`; ``tests/test_scheduler_guard.py`` fails when a name moves, its
signature changes or the plugin stops calling it through that namespace, and says what to
re-check after an upgrade.

1. A status check whose every attempt failed ends the run (plugin issue #207). The plugin's
   ``Executor.check_active_jobs`` drops its active jobs without reporting them when every
   ``query_job_status(command, logger)`` of one check returns ``(None, None)`` (controller or
   slurmdbd unreachable); Snakemake then waits forever, even after the scheduler is back and on
   SIGTERM. :func:`guard_status_query` raises instead once ``attempts`` queries in a row failed.

2. A job array is never held back (plugin issue #473). With ``--slurm-array-jobs``,
   ``Executor.run_jobs`` skips a rule's batch that is smaller than the rule's jobs still ready
   (``pending_jobs_for_rule``), "waiting for more jobs"; but Snakemake has already counted the
   batch as running and never offers it again, so those jobs are lost and the run hangs. It
   happens whenever the scheduler selects only part of a rule's ready jobs (the ``jobs:`` limit
   of the profile). :func:`no_pending_jobs` makes every selected batch go out at once: two or
   more jobs as one array, a single job as a plain job.

3. One array asks for one job's resources (the plugin takes ``jobs[0]``'s memory, runtime,
   CPUs and GPUs for the whole array), but a batch may mix jobs of different needs: shards of
   Hessian sets of different sizes, or a retried shard (its second attempt asks for more memory
   and time) next to fresh ones. :func:`split_by_resources` submits one array per distinct
   resource request instead.

No Snakemake import here: the plugin module and the error class come in as arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "PATCHED_NAMES",
    "VERIFIED_PLUGIN_VERSION",
    "group_by_resources",
    "guard_status_query",
    "install",
    "no_pending_jobs",
    "resource_key",
    "split_by_resources",
]

VERIFIED_PLUGIN_VERSION = "2.8.0"
"""The snakemake-executor-plugin-slurm version whose source these guards were checked against."""

PATCHED_NAMES = ("query_job_status", "pending_jobs_for_rule", "Executor._submit_array_jobs")
"""What :func:`install` replaces, as attributes of the plugin's package."""

MARK = "hessketch_guard"  # set on every replacement, so that installing twice changes nothing

UNREACHABLE = (
    "the SLURM status query failed {n} times in a row (last command: {command!r}); the "
    "scheduler cannot be reached, so the run ends here instead of waiting forever. Jobs "
    "already submitted keep running under SLURM; rerun the same command once `squeue` works "
    "again (finished jobs are kept, unfinished ones rerun)."
)


def guard_status_query(
    query: Callable[..., Any],
    attempts: Callable[[], int],
    error: type[Exception],
) -> Callable[..., Any]:
    """``query`` (the plugin's ``async query_job_status(command, logger)``), made to raise.

    The wrapper passes every result through; a failed query (``(None, None)``) is counted, and
    the ``attempts()``-th failure in a row raises ``error`` naming the last command. A
    successful query resets the count. ``attempts`` is read at each failure (the executor's
    settings exist only once the run starts).
    """
    failures: list[str] = []

    async def guarded_query(command, logger):
        result = await query(command, logger)
        if result != (None, None):
            failures.clear()
            return result
        failures.append(command)
        if len(failures) >= max(1, attempts()):
            raise error(UNREACHABLE.format(n=len(failures), command=command))
        return result

    guarded_query.__wrapped__ = query
    setattr(guarded_query, MARK, True)
    return guarded_query


def no_pending_jobs(dag: Any, rule_name: str) -> int:
    """Stand-in for the plugin's ``pending_jobs_for_rule``: no batch waits for more jobs.

    The jobs Snakemake hands to ``run_jobs`` are already counted as running, so the only
    right thing is to submit them now (see the module docstring, point 2).
    """
    return 0


setattr(no_pending_jobs, MARK, True)


def resource_key(job: Any) -> tuple:
    """What one sbatch call of ``job`` asks for: its threads and every resource, comparable."""
    resources = job.resources
    items = resources.items() if hasattr(resources, "items") else []
    return (job.threads, tuple(sorted((str(name), repr(value)) for name, value in items)))


def split_by_resources(submit_array: Callable[[Any, list], Any]) -> Callable[[Any, list], Any]:
    """``Executor._submit_array_jobs``, made to submit one array per resource request.

    Jobs that ask for the same (:func:`resource_key`) go out together as one array, in the
    order given; a job whose request no other job shares goes out as a plain job
    (``self._submit_job``).
    """

    def submit_arrays(self, jobs):
        for group in group_by_resources(jobs):
            if len(group) == 1:
                self._submit_job(group[0])
            else:
                submit_array(self, group)

    submit_arrays.__wrapped__ = submit_array
    setattr(submit_arrays, MARK, True)
    return submit_arrays


def group_by_resources(jobs: Iterable[Any]) -> list[list[Any]]:
    """``jobs`` grouped by :func:`resource_key`, groups and jobs in their first-seen order."""
    groups: dict[tuple, list[Any]] = {}
    for job in jobs:
        groups.setdefault(resource_key(job), []).append(job)
    return list(groups.values())


def install(plugin: Any, attempts: Callable[[], int], error: type[Exception]) -> list[str]:
    """Install the three guards into the plugin package ``plugin``; returns what was replaced.

    Each replacement happens only where the plugin still has the name (a plugin version
    without it is left alone: the test of the guard reports that) and only once.
    """
    done = []
    query = getattr(plugin, "query_job_status", None)
    if inspect.iscoroutinefunction(query) and not getattr(query, MARK, False):
        plugin.query_job_status = guard_status_query(query, attempts, error)
        done.append("query_job_status")
    pending = getattr(plugin, "pending_jobs_for_rule", None)
    if callable(pending) and not getattr(pending, MARK, False):
        plugin.pending_jobs_for_rule = no_pending_jobs
        done.append("pending_jobs_for_rule")
    executor = getattr(plugin, "Executor", None)
    submit_array = getattr(executor, "_submit_array_jobs", None)
    if callable(submit_array) and not getattr(submit_array, MARK, False):
        executor._submit_array_jobs = split_by_resources(submit_array)
        done.append("Executor._submit_array_jobs")
    return done
