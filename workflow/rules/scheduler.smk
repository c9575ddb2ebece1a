# Never wait forever on a broken scheduler.
#
# snakemake-executor-plugin-slurm (2.8.0 and earlier) drops its active jobs without reporting
# them when every status query of one check fails (controller or slurmdbd unreachable), and
# Snakemake then waits forever, even after the scheduler is back and even on SIGTERM (plugin
# issue #207). This wraps the plugin's status query so that a check whose every attempt
# failed ends the run with an error instead. Outside a SLURM run it changes nothing.


def guard_slurm_status_queries():
    """Make a fully failed SLURM status check an error (see the comment above)."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return
    query = getattr(plugin, "query_job_status", None)
    if query is None or getattr(query, "hessketch_guard", False):
        return
    failures = []

    async def guarded_query(command, logger):
        result = await query(command, logger)
        if result != (None, None):
            failures.clear()
            return result
        failures.append(command)
        settings = getattr(workflow, "executor_settings", None)
        attempts = getattr(settings, "status_attempts", None) or 5
        if len(failures) >= attempts:
            raise WorkflowError(
                f"the SLURM status query failed {len(failures)} times in a row "
                f"(last command: {command!r}); the scheduler cannot be reached, so the "
                "run ends here instead of waiting forever. Jobs already submitted keep "
                "running under SLURM; rerun the same command once `squeue` works again "
                "(finished jobs are kept, unfinished ones rerun)."
            )
        return result

    guarded_query.hessketch_guard = True
    plugin.query_job_status = guarded_query


guard_slurm_status_queries()
