# Portable resource estimates (memory in MB, runtime in minutes) derived from the problem size.
# Each grows with the attempt number, so a job retried by the profile (retries: N) asks for more.
# D, the number of parameters, is known only after training; it is read from the trajectory
# when it exists and estimated generously before.


from hessketch.krylov import ROW_BLOCK_BYTES


def problem_size():
    """D, k, s, q and the block size of the configured sketch."""
    sketch = sketch_params()
    return trajectory_dim(), sketch["k"], sketch["s"], sketch["probes"], sketch["block_size"]


def trajectory_dim():
    """D from the trajectory if it exists, else a generous guess from the model (10 M)."""
    path = Path(f"{RESULTS}/train/trajectory.h5")
    if path.exists():
        import h5py

        with h5py.File(path, "r") as f:
            return int(f["params"].shape[1])
    return 10_000_000


def _mb(nbytes, attempt, base=1000):
    return int((base + nbytes / 2**20) * (1 + 0.5 * (attempt - 1)))


def mem_mb_train(wildcards, attempt):
    """Training holds the data set, the model and the recorded parameters."""
    steps = len(training_params()["record_steps"])
    return _mb(4 * trajectory_dim() * (steps + 8), attempt, base=3000)


def mem_mb_measure(wildcards, attempt):
    """A shard holds the data, the model and a few D×block blocks (host side)."""
    dim, k, s, q, block = problem_size()
    return _mb(8 * dim * block * 6 + 8 * s * block * 2, attempt, base=3000)


def mem_mb_reduce(wildcards, attempt):
    """The reduction holds a row block (2^16 rows) of Y and HOmega, the probes, s×s and k×k."""
    dim, k, s, q, block = problem_size()
    row_block = min(dim, 2**16)
    nbytes = 8 * (4 * row_block * (k + q) + dim * q + 6 * s * s + 3 * s * k + 10 * k * k)
    return _mb(nbytes, attempt)


def mem_mb_exact(wildcards, attempt):
    """A dense float64 Hessian and its eigendecomposition (about three D×D matrices)."""
    return _mb(3 * 8 * trajectory_dim() ** 2, attempt)


def mem_mb_overlap(wildcards, attempt):
    """Eigenvectors in float64 plus a K×K block."""
    dim, k, s, q, block = problem_size()
    kmax = max(k, config["exact"]["k"])
    return _mb(8 * (2 * dim * kmax + 4 * kmax * kmax), attempt)


def mem_mb_wave(wildcards, attempt):
    """Wave jobs stream row blocks within a fixed float64 budget, plus square matrices of the
    basis size (all waves of a Krylov iteration)."""
    dim, k, s, q, block = problem_size()
    n = (config["sketch"]["wave_width"] or s) * config["sketch"]["passes"]
    return _mb(ROW_BLOCK_BYTES + 8 * 8 * n * n, attempt)


def runtime_minutes(base):
    """A runtime estimate that doubles with each attempt."""

    def runtime(wildcards, attempt):
        return base * 2 ** (attempt - 1)

    return runtime
