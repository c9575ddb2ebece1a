# Portable resource estimates (memory in MB, runtime in minutes) derived from the problem size.
# Each grows with the attempt number, so a job retried by the profile (retries: N) asks for more.
# D, the number of parameters, is known only after training; it is read from the trajectory
# when it exists and estimated generously before.


import math

from hessketch.krylov import ROW_BLOCK_BYTES
from hessketch.store import reduction_row_block as store_row_block

# Where the memory and runtime models below come from: benchmarks/bench_reduce_memory.py and
# benchmarks/bench_waves_memory.py run the real stages (reduce_sketch_store, compute_overlap,
# create_wave_store with plan_next_block/write_next_block, reduce_krylov) on synthetic Zarr
# stores in fresh processes and record VmHWM and wall time (benchmarks/out/*.json). Measured on
# a shared 2-core Xeon VM (AVX-512, torch 2.13 + MKL, zarr 3.1), 1 torch thread (the rules'
# default), D = 0.13–4 M, k = 200–1500, s = 2k, q = 10, block_size = 64, Krylov bases of
# n = 400–2000 columns. Peak RSS includes the ~240 MB of interpreter, torch, zarr and h5py.


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
    """A shard on the host: its D×block block, the images, their float32 digests and the test
    matrices' per-coordinate tables; plus the data and the model (base).

    Measured (sparse-sign, a synthetic operator on the CPU, block 64): 1,600 bytes per
    coordinate at D = 1, 2, 4 M (1.7, 3.2, 6.3 GB), ~320 of them the synthetic operator's own;
    a wave shard (read V, digest, HV, digest) holds 16·D·block bytes.
    """
    dim, k, s, q, block = problem_size()
    return _mb(dim * (24 * block + 200) + hessian_set_bytes(wildcards), attempt, base=3000)


def mem_mb_extract(wildcards, attempt):
    """The Hessian set being extracted: its points, the hashed copy, the decoded batch."""
    return _mb(1.5 * hessian_set_bytes(wildcards), attempt, base=2000)


def hessian_set_bytes(wildcards):
    """The job's Hessian set in memory: its points as float32, twice (read, then batched);
    3 GB for ImageNet's 5,000 validation images at 224×224."""
    points = config["hessian"]["sets"][wildcards.hset]
    shape = DataSpec(**config["data"]).input_shape()
    return 2 * 4 * points * math.prod(shape)


def reduction_row_block(dim, k, q):
    """Rows per block of the one-pass reduction (as ZarrSketch.row_block)."""
    return min(dim, store_row_block(k + q))


def mem_mb_reduce(wildcards, attempt):
    """reduce_sketch holds a few float64 copies of a row block of Y and HOmega (the block, its
    QR, W = Y B) plus s×s matrices in the core; nothing grows with D (the probes are
    regenerated per block). Row blocks shrink with k (hessketch.store.reduction_row_block).

    Measured peak RSS: k = 500 (65,536 rows): 1.29 GB at D = 4 M; k = 1500, s = 3000 (16,384
    rows): 1.18 GB at D = 1 M (3.7 GB with 65,536 rows and the QR of the concatenated block,
    before). The model, 500 MB + 40·rows·(k + q) + 32·s² bytes, is above every measurement.
    """
    dim, k, s, q, block = problem_size()
    rows = reduction_row_block(dim, k, q)
    return _mb(40 * rows * (k + q) + 32 * s * s, attempt, base=500)


def mem_mb_exact(wildcards, attempt):
    """A dense float64 Hessian and its eigendecomposition (about three D×D matrices)."""
    return _mb(3 * 8 * trajectory_dim() ** 2, attempt)


def mem_mb_overlap(wildcards, attempt):
    """compute_overlap reads only the K mask rows (and K random rows) of the eigenvectors: K×K
    blocks. What grows with D is the parameter vector, its magnitude order (float64 |θ|, sort
    values and indices) and the random mask's permutation.

    Measured peak RSS: 0.28, 0.30, 0.33, 0.40 GB at D = 0.26, 1, 2, 4 M (K = 500), 0.37 GB at
    D = 0.26 M, K = 1500: about 270 MB + 34·D + 49·K² bytes; the model is 500 MB + 40·D + 64·K².
    """
    dim, k, s, q, block = problem_size()
    kmax = max(k, config["exact"]["k"])
    return _mb(40 * dim + 64 * kmax * kmax, attempt, base=500)


def krylov_size():
    """Columns per wave (b) and of the whole basis (n); for one-pass sketches, the verification
    wave of k eigenvectors."""
    dim, k, s, q, block = problem_size()
    passes = config["sketch"]["passes"]
    if passes == 1:
        return k, k
    width = config["sketch"]["wave_width"] or s
    if passes == "adaptive":  # the largest basis the budget allows
        return width, config["sketch"]["max_hvps"]
    return width, width * passes


def mem_mb_wave(wildcards, attempt):
    """The wave jobs (create_krylov_wave, create_verification_wave, certify_eigenpairs,
    reduce_krylov) stream over row blocks of the stored waves: about 2.5·ROW_BLOCK_BYTES, plus
    ~24 bytes per row that the process keeps (heap growth with the number of row blocks), plus
    n×n float64 matrices of the basis (Gram, projection, images' Gram, Cholesky, eigh: 9 of
    them). Creating a
    wave store (its start block, its digests) holds one 65,536-row chunk at a time.

    Measured peak RSS (4 waves of 100, k = 200, D = 4 M): create_krylov_wave 0.77 GB (2.60 GB
    before the start block and the digests went chunk by chunk), reduce_krylov 0.91 GB;
    n = 1000 and 2000 (2 waves): 1.0–1.2 GB at D = 0.26 and 0.13 M.
    """
    dim, k, s, q, block = problem_size()
    width, n = krylov_size()
    streamed = 2.5 * ROW_BLOCK_BYTES + 24 * dim
    return _mb(streamed + 72 * n * n, attempt, base=500)


def runtime_minutes(base):
    """A runtime estimate that doubles with each attempt."""

    def runtime(wildcards, attempt):
        return base * 2 ** (attempt - 1)

    return runtime


# Runtimes (minutes, 1 thread) from the same benchmarks: wall seconds per row of D, fitted,
# then doubled for slower disks and machines, plus 10 minutes; doubled again per attempt.


def runtime_reduce(wildcards, attempt):
    """reduce_sketch: 59 µs per row at k = 500, ∝ k^1.44 (60, 167, 287 µs per row at
    k = 500, 1000, 1500; linear in D from 0.26 to 4 M), row block 65,536."""
    dim, k, s, q, block = problem_size()
    seconds = dim * 59e-6 * (k / 500) ** 1.44
    return int((2 * seconds / 60 + 10) * 2 ** (attempt - 1))


def runtime_wave(wildcards, attempt):
    """The slower of create_krylov_wave, orthogonalizing a wave of b against the n' = n − b
    columns before it (0.157·n' + 3.04e-4·n'·b µs per row; measured 75, 309, 864 µs at
    (n', b) = (400, 100), (1000, 500), (2000, 1000)), and reduce_krylov on all n columns
    (0.0935·n + 6.5e-5·(n² + n·k) µs per row; 53, 191, 600 µs at (n, k) = (400, 200),
    (1000, 500), (2000, 1000)). The verification wave's jobs (one-pass) stream V and HV once:
    the linear terms."""
    dim, k, s, q, block = problem_size()
    width, n = krylov_size()
    before = n - width
    create = 0.157 * before + 3.04e-4 * before * width
    reduce = 0.0935 * n + 6.5e-5 * (n * n + n * k)
    if config["sketch"]["passes"] == 1:
        create, reduce = 0.157 * n, 0.0935 * n
    per_row_us = max(create, reduce)
    return int((2 * dim * per_row_us * 1e-6 / 60 + 10) * 2 ** (attempt - 1))
