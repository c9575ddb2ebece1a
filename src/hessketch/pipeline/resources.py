"""Resource models of the workflow's jobs: memory in MB and runtime in minutes from the sizes.

Pure functions of the problem's sizes (``D``, ``k``, ``s``, probes, block size, Krylov basis),
so they are tested against the measurements they were fitted to (tests/test_resources.py);
``workflow/rules/resources.smk`` only reads the sizes from the config and the trajectory and
calls them. Each estimate grows with the attempt number, so a job retried by the profile
(``retries: N``) asks for more.

Where the models come from: benchmarks/bench_reduce_memory.py and
benchmarks/bench_waves_memory.py run the real stages (reduce_sketch_store, compute_overlap,
create_wave_store with plan_next_block/write_next_block, reduce_krylov) on synthetic Zarr stores
in fresh processes and record VmHWM and wall time. Measured on a shared 2-core Xeon VM (AVX-512,
torch 2.13 + MKL, zarr 3.1), 1 torch thread (the rules' default), D = 0.13–4 M, k = 200–1500,
s = 2k, q = 10, block_size = 64, Krylov bases of n = 400–2000 columns. Peak RSS includes the
~240 MB of interpreter, torch, zarr and h5py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hessketch.hessian import JACOBIAN_BYTES
from hessketch.krylov import ROW_BLOCK_BYTES
from hessketch.masks import BLOCK_BYTES as MASK_BLOCK_BYTES
from hessketch.store import reduction_row_block as store_row_block

__all__ = [
    "MeasurementSize",
    "hessian_set_bytes",
    "krylov_size",
    "mem_mb",
    "mem_mb_density",
    "mem_mb_exact",
    "mem_mb_extract",
    "mem_mb_measure",
    "mem_mb_overlap",
    "mem_mb_reduce",
    "mem_mb_train",
    "mem_mb_wave",
    "reduction_row_block",
    "runtime_minutes",
    "runtime_reduce",
    "runtime_wave",
]


@dataclass(frozen=True)
class MeasurementSize:
    """The sizes that decide a Hessian's jobs: ``D``, ``k``, ``s``, probes ``q``, block size."""

    dim: int
    k: int
    s: int
    probes: int = 10
    block_size: int = 64


def mem_mb(nbytes: float, attempt: int, base: float = 1000) -> int:
    """``base`` MB plus ``nbytes``, 50 % more per retry."""
    return int((base + nbytes / 2**20) * (1 + 0.5 * (attempt - 1)))


def mem_mb_train(dim: int, recorded_steps: int, attempt: int) -> int:
    """Training holds the data set, the model and the recorded parameters."""
    return mem_mb(4 * dim * (recorded_steps + 8), attempt, base=3000)


def hessian_set_bytes(points: int, input_shape: tuple[int, ...]) -> int:
    """A Hessian set's points in memory (bytes).

    A Hessian set in memory: its points as float32, twice (read, then batched); 3 GB for
    ImageNet's 5,000 validation images at 224×224.
    """
    return 2 * 4 * points * math.prod(input_shape)


def mem_mb_measure(size: MeasurementSize, set_bytes: int, attempt: int) -> int:
    """A measurement shard on the host (MB).

    A shard on the host: its D×block block, the images, their float32 digests and the test
    matrices' per-coordinate tables; plus the data and the model (base).

    Measured (sparse-sign, a synthetic operator on the CPU, block 64): 1,600 bytes per
    coordinate at D = 1, 2, 4 M (1.7, 3.2, 6.3 GB), ~320 of them the synthetic operator's own;
    a wave shard (read V, digest, HV, digest) holds 16·D·block bytes.
    """
    return mem_mb(size.dim * (24 * size.block_size + 200) + set_bytes, attempt, base=3000)


def mem_mb_extract(set_bytes: int, attempt: int) -> int:
    """The Hessian set being extracted: its points, the hashed copy, the decoded batch."""
    return mem_mb(1.5 * set_bytes, attempt, base=2000)


def reduction_row_block(dim: int, k: int, q: int) -> int:
    """Rows per block of the one-pass reduction (as ZarrSketch.row_block)."""
    return min(dim, store_row_block(k + q))


def mem_mb_reduce(size: MeasurementSize, attempt: int) -> int:
    """The one-pass reduction (MB): row blocks of Y and HOmega, s×s matrices.

    reduce_sketch holds a few float64 copies of a row block of Y and HOmega (the block, its
    QR, W = Y B) plus s×s matrices in the core; nothing grows with D (the probes are
    regenerated per block). Row blocks shrink with k (hessketch.store.reduction_row_block).

    Measured peak RSS: k = 500 (65,536 rows): 1.29 GB at D = 4 M; k = 1500, s = 3000 (16,384
    rows): 1.18 GB at D = 1 M. The model, 500 MB + 40·rows·(k + q) + 32·s² bytes, is above
    every measurement.
    """
    rows = reduction_row_block(size.dim, size.k, size.probes)
    return mem_mb(40 * rows * (size.k + size.probes) + 32 * size.s**2, attempt, base=500)


def mem_mb_exact(dim: int, attempt: int) -> int:
    """A dense float64 curvature matrix and its eigendecomposition (about three D×D)."""
    return mem_mb(3 * 8 * dim**2, attempt)


def mem_mb_overlap(
    dim: int,
    kmax: int,
    attempt: int,
    *,
    set_bytes: int = 0,
    masks: tuple[str, ...] = (),
) -> int:
    """compute_overlap (MB): mask rows, parameter vectors, the masks' extras.

    compute_overlap reads the K rows of each fixed mask (K×K blocks); what grows with D is
    the parameter vector, its magnitude order (float64 |θ|, sort values and indices) and a
    random mask's permutation.

    Measured peak RSS (magnitude and one random mask): 0.28, 0.30, 0.33, 0.40 GB at D = 0.26,
    1, 2, 4 M (K = 500), 0.37 GB at D = 0.26 M, K = 1500: about 270 MB + 34·D + 49·K² bytes;
    the model is 500 MB + 40·D + 64·K². The other masks add (not measured; their own block
    sizes): ``best`` one streamed row block (hessketch.masks.BLOCK_BYTES) and the K running
    top-k pools (8·K² bytes); ``gradient`` and ``ggn-diagonal`` the Hessian set and the network
    (parameters, gradient: 16·D), and ``ggn-diagonal`` its per-point Jacobians
    (hessketch.hessian.JACOBIAN_BYTES, float64 copies twice).
    """
    nbytes = 40 * dim + 64 * kmax * kmax
    if "best" in masks:
        nbytes += MASK_BLOCK_BYTES + 8 * kmax * kmax
    if {"gradient", "ggn-diagonal"} & set(masks):
        nbytes += set_bytes + 16 * dim
    if "ggn-diagonal" in masks:
        nbytes += 3 * JACOBIAN_BYTES
    return mem_mb(nbytes, attempt, base=500)


def krylov_size(
    size: MeasurementSize, passes: int | str, wave_width: int | None, max_hvps: int | None
) -> tuple[int, int]:
    """Columns per wave (b) and of the whole basis (n).

    Columns per wave (b) and of the whole basis (n); for one-pass sketches, the verification
    wave of k eigenvectors; for adaptive runs, the largest basis the budget allows.
    """
    if passes == 1:
        return size.k, size.k
    width = wave_width or size.s
    if passes == "adaptive":
        if max_hvps is None:
            raise ValueError("an adaptive run needs sketch.max_hvps")
        return width, max_hvps
    return width, width * int(passes)


def mem_mb_wave(dim: int, n: int, attempt: int) -> int:
    """The wave jobs (MB): streamed row blocks plus n×n matrices of the basis.

    The wave jobs (create_krylov_wave, create_verification_wave, certify_eigenpairs,
    reduce_krylov) stream over row blocks of the stored waves: about 2.5·ROW_BLOCK_BYTES, plus
    ~24 bytes per row that the process keeps (heap growth with the number of row blocks), plus
    n×n float64 matrices of the basis (Gram, projection, images' Gram, Cholesky, eigh: 9 of
    them). Creating a wave store (its start block, its digests) holds one 65,536-row chunk at a
    time.

    Measured peak RSS (4 waves of 100, k = 200, D = 4 M): create_krylov_wave 0.77 GB,
    reduce_krylov 0.91 GB; n = 1000 and 2000 (2 waves): 1.0–1.2 GB at D = 0.26 and 0.13 M.
    """
    return mem_mb(2.5 * ROW_BLOCK_BYTES + 24 * dim + 72 * n * n, attempt, base=500)


def mem_mb_density(dim: int, probes: int, steps: int, set_bytes: int, attempt: int) -> int:
    """spectral_density (MB): the Lanczos bases and the products of one block of probes.

    Every probe keeps its whole float64 basis for full reorthogonalization (8·D·p·m bytes),
    plus a few D×p float64 work blocks and the products' own memory (as a measurement shard of
    block p: 24·D·p + 200·D); the data and the model in the base. Not measured: the sizes of
    what the stage allocates.
    """
    nbytes = 8 * dim * probes * (steps + 4) + dim * (24 * probes + 200) + set_bytes
    return mem_mb(nbytes, attempt, base=3000)


def runtime_minutes(base: float, attempt: int) -> int:
    """``base`` minutes, doubled with each attempt."""
    return int(base * 2 ** (attempt - 1))


# Runtimes (minutes, 1 thread) from the same benchmarks: wall seconds per row of D, fitted,
# then doubled for slower disks and machines, plus 10 minutes; doubled again per attempt.


def reduce_us_per_row(k: int) -> float:
    """Fitted wall time of reduce_sketch per row of D (µs): 59 at k = 500, ∝ k^1.44."""
    return 59 * (k / 500) ** 1.44


def runtime_reduce(size: MeasurementSize, attempt: int) -> int:
    """reduce_sketch's runtime (minutes), from :func:`reduce_us_per_row`.

    reduce_sketch: 60, 167, 287 µs per row measured at k = 500, 1000, 1500 (linear in D from
    0.26 to 4 M, row block 65,536).
    """
    seconds = size.dim * reduce_us_per_row(size.k) * 1e-6
    return int((2 * seconds / 60 + 10) * 2 ** (attempt - 1))


def wave_us_per_row(k: int, width: int, n: int, one_pass: bool) -> float:
    """Fitted wall time per row of D (µs) of the slower wave job.

    Fitted wall time per row of D (µs) of the slower of create_krylov_wave (a wave of b
    against the n' = n − b columns before it: 0.157·n' + 3.04e-4·n'·b) and reduce_krylov on all
    n columns (0.0935·n + 6.5e-5·(n² + n·k)). The verification wave's jobs (one-pass) stream
    V and HV once: the linear terms.
    """
    if one_pass:
        return max(0.157 * n, 0.0935 * n)
    before = n - width
    create = 0.157 * before + 3.04e-4 * before * width
    reduce = 0.0935 * n + 6.5e-5 * (n * n + n * k)
    return max(create, reduce)


def runtime_wave(size: MeasurementSize, width: int, n: int, one_pass: bool, attempt: int) -> int:
    """The wave jobs' runtime (minutes), from :func:`wave_us_per_row`.

    The wave jobs: measured 75, 309, 864 µs per row for create_krylov_wave at (n', b) =
    (400, 100), (1000, 500), (2000, 1000) and 53, 191, 600 µs for reduce_krylov at (n, k) =
    (400, 200), (1000, 500), (2000, 1000).
    """
    per_row = wave_us_per_row(size.k, width, n, one_pass)
    return int((2 * size.dim * per_row * 1e-6 / 60 + 10) * 2 ** (attempt - 1))
