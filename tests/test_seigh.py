"""SEIGH on symmetric indefinite matrices with known spectra (float64 unless stated).

Tolerances are written per case. The error of a sketched eigendecomposition is governed by the
spectral tail beyond k: the cases are chosen so that the tail is small relative to the top
eigenvalues checked.
"""

from __future__ import annotations

import pytest
import torch

from hessketch.errors import NumericalError
from hessketch.seigh import measure_sketch, reduce_sketch, seigh
from hessketch.sketch import SketchSpec, shard_blocks

D = 300


def random_orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def signs(n: int) -> torch.Tensor:
    return torch.tensor([(-1.0) ** (i // 2) for i in range(n)], dtype=torch.float64)  # ++--++--


def spectrum(kind: str) -> torch.Tensor:
    i = torch.arange(D, dtype=torch.float64)
    if kind == "lowrank+noise":  # rank 10 with |λ| in [1, 10], plus a 1e-4 noise floor
        mags = torch.where(i < 10, 10 - i, torch.full_like(i, 1e-4))
    elif kind == "polynomial":
        mags = (i + 1) ** -3.0
    elif kind == "exponential":
        mags = 0.8**i
    else:
        raise ValueError(kind)
    return mags * signs(D)


def matrix(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = random_orthogonal(D)
    return (q * lam) @ q.T, q


# case -> (k, s, number of top eigenpairs checked, minimum cos² of eigenvector alignment).
# Eigenvalues are checked to |λ̂ − λ| <= ‖λ_tail‖₂, the Frobenius norm of the spectrum beyond
# k: the part of the operator that a rank-k sketch cannot see.
CASES = {
    "lowrank+noise": (20, 40, 10, 0.99999),
    "polynomial": (30, 60, 5, 0.9995),
    "exponential": (40, 80, 10, 0.9995),
}


@pytest.mark.parametrize("test_matrix", ["ssrft", "gaussian", "rademacher"])
@pytest.mark.parametrize("case", list(CASES))
def test_known_spectra(case: str, test_matrix: str) -> None:
    k, s, top, cos2 = CASES[case]
    lam = spectrum(case)
    a, q = matrix(lam)
    values, vectors = seigh(a, D, k, s, seed=3, test_matrix=test_matrix)
    assert values.shape == (k,) and vectors.shape == (D, k)
    # sorted by descending |λ|
    assert bool((values.abs()[:-1] >= values.abs()[1:]).all())
    order = torch.argsort(lam.abs(), descending=True, stable=True)
    tail = float(lam[order[k:]].norm())
    torch.testing.assert_close(values[:top], lam[order[:top]], rtol=0, atol=tail)
    # eigenvectors orthonormal to float64 precision, and aligned with the true ones
    torch.testing.assert_close(
        vectors.T @ vectors, torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-10
    )
    alignment = (vectors[:, :top] * q[:, order[:top]]).sum(0).square()
    assert float(alignment.min()) >= cos2


def test_float32_and_callable_operator() -> None:
    lam = spectrum("exponential")
    a, _ = matrix(lam)
    v64, _w64 = seigh(a, D, 40, 80, seed=1)
    v32, _w32 = seigh(lambda x: a.float() @ x, D, 40, 80, seed=1)
    assert v32.dtype == torch.float32
    # single-precision measurements: top eigenvalues agree to 1e-4 relative
    torch.testing.assert_close(v32[:10].double(), v64[:10], rtol=1e-4, atol=0)


def test_same_seed_same_bits_different_seed_different() -> None:
    a, _ = matrix(spectrum("polynomial"))
    first, second = seigh(a, D, 10, seed=5), seigh(a, D, 10, seed=5)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = seigh(a, D, 10, seed=6)
    assert not torch.equal(first[1], other[1])


def test_default_s_is_twice_k() -> None:
    a, _ = matrix(spectrum("exponential"))
    torch.testing.assert_close(seigh(a, D, 15)[0], seigh(a, D, 15, 30)[0], rtol=0, atol=0)


def test_blocks_and_shards_partition_the_measurements() -> None:
    spec = SketchSpec(dim=D, k=20, s=45, block_size=8, probes=5)
    blocks = spec.blocks()
    assert sum(b.size for b in blocks if b.kind == "sketch") == 45
    assert sum(b.size for b in blocks if b.kind == "probe") == 5
    for n in (1, 3, 7):
        dealt = [b for i in range(n) for b in shard_blocks(spec, i, n)]
        assert sorted(dealt, key=lambda b: (b.kind, b.start)) == sorted(
            blocks, key=lambda b: (b.kind, b.start)
        )


def test_aposteriori_error_estimate() -> None:
    lam = spectrum("polynomial")
    a, _ = matrix(lam)
    spec = SketchSpec(dim=D, k=10, s=20, seed=2, probes=60, block_size=16)
    sketch = measure_sketch(spec, lambda v: a @ v, dtype=torch.float64)
    result = reduce_sketch(sketch)
    w = sketch.read("Y") @ result.basis_map
    true_residual = float((a - (w * result.eigenvalues) @ w.T).square().sum())
    # 60 probes: the estimate is within a factor 2 except with probability < 1e-4
    # (aposteriori_tail_bounds(60, 2.0)); the Frobenius estimate is within 10 %.
    assert true_residual / 2 <= result.residual_sq <= 2 * true_residual
    assert result.frobenius_sq == pytest.approx(float(lam.square().sum()), rel=0.1)


def test_rank_deficient_sketch_is_refused() -> None:
    lam = torch.zeros(D, dtype=torch.float64)
    lam[:5] = torch.tensor([5.0, -4, 3, -2, 1], dtype=torch.float64)
    a, _ = matrix(lam)
    with pytest.raises(NumericalError, match="numerical rank 5 < k=10"):
        seigh(a, D, 10)


def test_bad_sizes() -> None:
    a, _ = matrix(spectrum("exponential"))
    with pytest.raises(ValueError, match="k <= s"):
        seigh(a, D, 10, 5)
    with pytest.raises(ValueError, match="s <= dim"):
        seigh(a, D, 10, D + 1)
    with pytest.raises(ValueError, match="shape"):
        seigh(a, D + 1, 10)


class _OutOfCore:
    """The same sketch seen as an out-of-core source (no ``in_memory``): Householder TSQR."""

    def __init__(self, sketch) -> None:
        self.spec, self.row_block, self._sketch = sketch.spec, 64, sketch

    def read(self, name, rows=None):
        return self._sketch.read(name, rows)


@pytest.mark.parametrize("case", ["exponential", "polynomial", "flat"])
def test_cholesky_qr_matches_householder_tsqr(case: str) -> None:
    """In memory the reduction factors Y by Cholesky QR (in row blocks of 64 here, like the
    out-of-core TSQR); both give the same eigenpairs to round-off. κ(Y) is 9.0e4
    ('polynomial', k = 30) and 2.6e4 ('exponential', k = 40): CholeskyQR2; 'flat' (|λ| in
    [1, 2], k = 20) has κ(Y) < 1e3: one Cholesky QR. Tolerance 1e-9 relative."""
    if case == "flat":
        k, s = 20, 40
        a, _ = matrix(torch.linspace(2, 1, D, dtype=torch.float64) * signs(D))
    else:
        k, s, _, _ = CASES[case]
        a, _ = matrix(spectrum(case))
    spec = SketchSpec(dim=D, k=k, s=s, seed=3, probes=0)
    sketch = measure_sketch(spec, lambda v: a @ v, dtype=torch.float64)
    sketch.row_block = 64
    fast, slow = reduce_sketch(sketch), reduce_sketch(_OutOfCore(sketch))
    scale = float(fast.eigenvalues.abs().max())
    assert torch.allclose(fast.eigenvalues, slow.eigenvalues, rtol=0, atol=1e-9 * scale)
    y = sketch.read("Y")
    w_fast, w_slow = y @ fast.basis_map, y @ slow.basis_map
    gram = w_fast.T @ w_fast
    assert torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-9)
    top = 5  # well-separated top pairs: the vectors agree up to sign
    cos = (w_fast[:, :top] * w_slow[:, :top]).sum(0).abs()
    assert torch.allclose(cos, torch.ones(top, dtype=torch.float64), atol=1e-9)


def test_ill_conditioned_sketch_falls_back_to_householder(caplog) -> None:
    """κ(Y) = 1.4e9 (beyond CholeskyQR2's safe range of 1e6, above the rank cut of 1e10): the
    in-memory reduction takes the Householder path and recovers the eigenvalues."""
    lam = torch.zeros(D, dtype=torch.float64)
    lam[:10] = torch.logspace(0, -8, 10, dtype=torch.float64) * signs(10)
    a, _ = matrix(lam)
    spec = SketchSpec(dim=D, k=10, s=20, seed=1, probes=0)
    sketch = measure_sketch(spec, lambda v: a @ v, dtype=torch.float64)
    with caplog.at_level("INFO", logger="hessketch.seigh"):
        result = reduce_sketch(sketch)
    assert "Householder TSQR" in caplog.text
    assert torch.allclose(result.eigenvalues[:5], lam[:5], rtol=1e-6, atol=0)
