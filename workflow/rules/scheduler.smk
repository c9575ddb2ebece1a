# Never wait forever on a broken scheduler, nor on a held-back job array.
#
# snakemake-executor-plugin-slurm (verified: 2.8.0) can leave Snakemake waiting forever: it drops
# its active jobs without reporting them when every status query of one check fails (controller
# or slurmdbd unreachable; plugin issue #207), and with --slurm-array-jobs it drops a batch of
# jobs smaller than the rule's ready jobs, "waiting for more" that never come (issue #473). An
# array also asks for its first job's resources only. hessketch.slurm_guard wraps the plugin's
# functions so that a fully failed check ends the run with an error, every batch is submitted,
# and each array holds jobs of one resource request. tests/test_scheduler_guard.py fails when
# the wrapped functions move. Outside a SLURM run this changes nothing.


def guard_slurm_plugin():
    """Install hessketch.slurm_guard into the SLURM plugin, when it is installed."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return
    from hessketch import slurm_guard

    def attempts():
        settings = getattr(workflow, "executor_settings", None)
        return getattr(settings, "status_attempts", None) or 5

    slurm_guard.install(plugin, attempts, WorkflowError)


guard_slurm_plugin()
