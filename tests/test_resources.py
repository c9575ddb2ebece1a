"""The jobs' resource models against the measurements they were fitted to.

Each memory model must lie above every peak RSS recorded for it (benchmarks/bench_reduce_memory.py,
benchmarks/bench_waves_memory.py; the figures are those of the models' docstrings), each
runtime model above the measured wall time, and every estimate must grow with the attempt.
"""

from __future__ import annotations

import pytest

from hessketch.pipeline import resources as res

M = 1_000_000
GB = 1000  # MB


def size(dim: int, k: int, s: int | None = None, probes: int = 10, block: int = 64):
    return res.MeasurementSize(dim, k, 2 * k if s is None else s, probes, block)


@pytest.mark.parametrize(
    ("dim", "k", "s", "peak_gb"),
    [(4 * M, 500, 1000, 1.29), (1 * M, 1500, 3000, 1.18)],
)
def test_reduce_memory_is_above_the_measured_peaks(dim, k, s, peak_gb) -> None:
    assert res.mem_mb_reduce(size(dim, k, s), attempt=1) >= peak_gb * GB


@pytest.mark.parametrize(
    ("dim", "kmax", "peak_gb"),
    [(260_000, 500, 0.28), (1 * M, 500, 0.30), (2 * M, 500, 0.33), (4 * M, 500, 0.40),
     (260_000, 1500, 0.37)],
)  # fmt: skip
def test_overlap_memory_is_above_the_measured_peaks(dim, kmax, peak_gb) -> None:
    assert res.mem_mb_overlap(dim, kmax, attempt=1) >= peak_gb * GB
    # every mask only adds to it
    more = res.mem_mb_overlap(
        dim, kmax, 1, set_bytes=10**8, masks=("random", "best", "gradient", "ggn-diagonal")
    )
    assert more > res.mem_mb_overlap(dim, kmax, 1, masks=("random",))


@pytest.mark.parametrize("dim", [1 * M, 2 * M, 4 * M])
def test_measurement_memory_is_above_1600_bytes_per_coordinate(dim) -> None:
    measured_mb = 1600 * dim / 2**20
    assert res.mem_mb_measure(size(dim, 500), set_bytes=0, attempt=1) >= measured_mb


@pytest.mark.parametrize(
    ("dim", "n", "peak_gb"),
    [(4 * M, 400, 0.91), (260_000, 1000, 1.2), (130_000, 2000, 1.2)],
)
def test_wave_memory_is_above_the_measured_peaks(dim, n, peak_gb) -> None:
    assert res.mem_mb_wave(dim, n, attempt=1) >= peak_gb * GB


@pytest.mark.parametrize(("k", "measured_us"), [(500, 60), (1000, 167), (1500, 287)])
def test_reduce_runtime_fit_and_margin(k, measured_us) -> None:
    # the fit is within 5 % of each measurement, and the estimate covers it twice over
    assert res.reduce_us_per_row(k) == pytest.approx(measured_us, rel=0.05)
    dim = 4 * M
    measured_minutes = dim * measured_us * 1e-6 / 60
    assert res.runtime_reduce(size(dim, k), attempt=1) >= 1.9 * measured_minutes


@pytest.mark.parametrize(
    ("k", "width", "n", "create_us", "reduce_us"),
    [(200, 100, 500, 75, None), (500, 500, 1500, 309, None), (1000, 1000, 3000, 864, None),
     (200, 100, 400, None, 53), (500, 500, 1000, None, 191), (1000, 1000, 2000, None, 600)],
)  # fmt: skip
def test_wave_runtime_covers_both_jobs(k, width, n, create_us, reduce_us) -> None:
    """create_krylov_wave measured at n' = n − b columns before the wave, reduce_krylov at n."""
    per_row = res.wave_us_per_row(k, width, n, one_pass=False)
    measured = create_us if create_us is not None else reduce_us
    assert per_row >= 0.95 * measured


def test_every_estimate_grows_with_the_attempt() -> None:
    sz = size(2 * M, 500)
    estimates = [
        lambda a: res.mem_mb_train(sz.dim, 10, a),
        lambda a: res.mem_mb_measure(sz, 10**8, a),
        lambda a: res.mem_mb_extract(10**8, a),
        lambda a: res.mem_mb_reduce(sz, a),
        lambda a: res.mem_mb_exact(7030, a),
        lambda a: res.mem_mb_overlap(sz.dim, 500, a),
        lambda a: res.mem_mb_wave(sz.dim, 1000, a),
        lambda a: res.runtime_minutes(60, a),
        lambda a: res.runtime_reduce(sz, a),
        lambda a: res.runtime_wave(sz, 100, 1000, False, a),
    ]
    for estimate in estimates:
        values = [estimate(a) for a in (1, 2, 3)]
        assert values[0] < values[1] < values[2], values


def test_krylov_sizes() -> None:
    sz = size(10**6, 100)
    assert res.krylov_size(sz, 1, None, None) == (100, 100)  # the verification wave
    assert res.krylov_size(sz, 4, 20, None) == (20, 80)
    assert res.krylov_size(sz, 4, None, None) == (200, 800)  # width defaults to s
    assert res.krylov_size(sz, "adaptive", 20, 1200) == (20, 1200)
    with pytest.raises(ValueError, match="max_hvps"):
        res.krylov_size(sz, "adaptive", 20, None)


def test_exact_memory_holds_three_dense_matrices() -> None:
    assert res.mem_mb_exact(7030, 1) >= 3 * 8 * 7030**2 / 2**20
