# Resource estimates (memory in MB, runtime in minutes) of the jobs: the models live in
# hessketch.pipeline.resources (tested against the measurements they were fitted to); these
# wrappers read the sizes from the config and, for D, from the trajectory when it exists (a
# generous guess before: D is known only after training).


from hessketch.pipeline import resources as res


def problem_size():
    """D, k, s, q and the block size of the configured sketch."""
    sketch = sketch_params()
    return res.MeasurementSize(
        trajectory_dim(), sketch["k"], sketch["s"], sketch["probes"], sketch["block_size"]
    )


def trajectory_dim():
    """D from the trajectory if it exists, else a generous guess from the model (10 M)."""
    path = Path(f"{RESULTS}/train/trajectory.h5")
    if path.exists():
        import h5py

        with h5py.File(path, "r") as f:
            return int(f["params"].shape[1])
    return 10_000_000


def hessian_set_bytes(wildcards):
    """The job's Hessian set in memory (see hessketch.pipeline.resources)."""
    points = config["hessian"]["sets"][wildcards.hset]
    return res.hessian_set_bytes(points, DataSpec(**config["data"]).input_shape())


def krylov_size():
    """Columns per wave (b) and of the whole basis (n)."""
    sketch = config["sketch"]
    return res.krylov_size(
        problem_size(), sketch["passes"], sketch["wave_width"], sketch["max_hvps"]
    )


def mem_mb_train(wildcards, attempt):
    steps = len(training_params()["record_steps"])
    return res.mem_mb_train(trajectory_dim(), steps, attempt)


def mem_mb_measure(wildcards, attempt):
    return res.mem_mb_measure(problem_size(), hessian_set_bytes(wildcards), attempt)


def mem_mb_extract(wildcards, attempt):
    return res.mem_mb_extract(hessian_set_bytes(wildcards), attempt)


def mem_mb_reduce(wildcards, attempt):
    return res.mem_mb_reduce(problem_size(), attempt)


def mem_mb_exact(wildcards, attempt):
    return res.mem_mb_exact(trajectory_dim(), attempt)


def mem_mb_overlap(wildcards, attempt):
    kmax = max(config["sketch"]["k"], config["exact"]["k"])
    return res.mem_mb_overlap(
        trajectory_dim(),
        kmax,
        attempt,
        set_bytes=hessian_set_bytes(wildcards),
        masks=tuple(config["overlap"]["masks"]),
    )


def mem_mb_wave(wildcards, attempt):
    return res.mem_mb_wave(trajectory_dim(), krylov_size()[1], attempt)


def mem_mb_density(wildcards, attempt):
    density = config["density"]
    return res.mem_mb_density(
        trajectory_dim(),
        density["probes"],
        density["steps"],
        hessian_set_bytes(wildcards),
        attempt,
    )


def runtime_minutes(base):
    """A runtime estimate of ``base`` minutes that doubles with each attempt."""

    def runtime(wildcards, attempt):
        return res.runtime_minutes(base, attempt)

    return runtime


def runtime_reduce(wildcards, attempt):
    return res.runtime_reduce(problem_size(), attempt)


def runtime_wave(wildcards, attempt):
    width, n = krylov_size()
    one_pass = config["sketch"]["passes"] == 1
    return res.runtime_wave(problem_size(), width, n, one_pass, attempt)
