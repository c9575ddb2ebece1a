"""Test matrices: exact properties in float64, determinism, sub-block independence, moments.

Tolerances: float64 results built from O(log D) orthonormal stages are checked to 1e-12 absolute
(entries and inner products are O(1)); float32 ones to 1e-5. Bit-identical (``torch.equal``)
wherever an entry is a pure elementwise function of the hash: Gaussian, Rademacher, sparse-sign.
SSRFT entries come out of GEMMs and FFTs whose summation order may depend on the batch, so
its sub-blocks are compared to 1e-15.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.fft
import torch

import hessketch.testmatrices as tm
from hessketch.testmatrices import (
    SSRFT,
    TEST_MATRIX_KINDS,
    WORKSPACE_BYTES,
    Gaussian,
    Rademacher,
    SparseSign,
    TestMatrix,
    dct_ortho,
    derive_seed,
    idct_ortho,
    make_test_matrix,
    register_test_matrix,
)

F64 = torch.float64
SIZES = [1, 2, 3, 7, 16, 97, 256, 1000]
EXACT_KINDS = ("gaussian", "rademacher", "sparse-sign")  # entries are pure hash functions
ROWS = 60  # s given to sparse-sign in the generic tests


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=F64).to(dtype)


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    b_t = torch.from_numpy(np.asarray(b)).to(F64)
    return float((a.to(F64) - b_t).abs().max() / b_t.abs().max())


def _make(kind: str, dim: int, seed: int, rows: int = ROWS) -> TestMatrix:
    return make_test_matrix(kind, dim, seed, rows=rows)


def _same(kind: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if kind in EXACT_KINDS:
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


# --- derive_seed and the hash ----------------------------------------------------------------


def test_derive_seed_is_pure_63_bit_and_label_sensitive() -> None:
    s = derive_seed(5, "gaussian", 10, 3)
    assert s == derive_seed(5, "gaussian", 10, 3)
    assert 0 <= s < 2**63
    others = {
        derive_seed(6, "gaussian", 10, 3),
        derive_seed(5, "gaussian", 10, 4),
        derive_seed(5, "rademacher", 10, 3),
        derive_seed(5, "gaussian", "10", 3),  # str vs int label must differ
        derive_seed(5, "gaussian", 103),  # no concatenation collisions
        derive_seed(5),
    }
    assert s not in others and len(others) == 6
    assert 0 <= derive_seed(-1, "x") < 2**63


@pytest.mark.parametrize("bad", [(1.5,), (True,), (None,)])
def test_derive_seed_rejects_bad_labels(bad: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="labels must be str or int"):
        derive_seed(0, *bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be an int"):
        derive_seed(bad[0])  # type: ignore[arg-type]


def _splitmix64_reference(x: int) -> int:
    mask = (1 << 64) - 1
    z = x & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_int64_mixer_matches_unsigned_splitmix64() -> None:
    # Wrapping int64 multiplies and masked shifts must reproduce the unsigned algorithm.
    values = [0, 1, 12345, -1, -(2**63), 2**63 - 1, 0x9E3779B97F4A7C15 - 2**64]
    got = tm._mix64_(torch.tensor(values, dtype=torch.int64)).tolist()
    assert [g & (2**64 - 1) for g in got] == [_splitmix64_reference(v) for v in values]


# --- DCT -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("axis", [0, 1])
def test_dct_idct_match_scipy(n: int, axis: int) -> None:
    shape = (n, 3) if axis == 0 else (3, n)
    x = _randn(*shape, seed=n)
    ref_dct = scipy.fft.dct(x.numpy(), type=2, norm="ortho", axis=axis)
    ref_idct = scipy.fft.idct(x.numpy(), type=2, norm="ortho", axis=axis)
    assert _rel(dct_ortho(x, dim=axis), ref_dct) < 1e-12
    assert _rel(idct_ortho(x, dim=axis), ref_idct) < 1e-12
    # float32: computed in single precision, so ~1e-7 relative per op, log(n) growth.
    x32 = x.float()
    y32 = dct_ortho(x32, dim=axis)
    assert y32.dtype == torch.float32
    assert _rel(y32, ref_dct) < 1e-5
    assert _rel(idct_ortho(x32, dim=axis), ref_idct) < 1e-5


@pytest.mark.parametrize("n", SIZES)
def test_idct_inverts_dct_any_dim(n: int) -> None:
    x = _randn(2, n, 4, seed=1)
    y = dct_ortho(x, dim=1)
    assert y.shape == x.shape
    torch.testing.assert_close(idct_ortho(y, dim=1), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(dct_ortho(idct_ortho(x, dim=-2), dim=-2), x, rtol=0, atol=1e-12)
    # Orthonormal: norms are preserved.
    assert abs(float(y.norm() - x.norm())) < 1e-12 * float(x.norm())


def test_dct_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="float32 or float64"):
        dct_ortho(torch.arange(4))
    with pytest.raises(ValueError, match="float32 or float64"):
        idct_ortho(torch.zeros(4, dtype=torch.complex128))
    with pytest.raises(ValueError, match="out of range"):
        dct_ortho(torch.zeros(4, 2), dim=2)
    with pytest.raises(ValueError, match="length >= 1"):
        idct_ortho(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        dct_ortho(np.zeros(3))  # type: ignore[arg-type]


def test_dct_rows_closed_form_matches_dct_matrix() -> None:
    for n in (1, 2, 7, 64):
        dense = dct_ortho(torch.eye(n, dtype=F64), dim=0)  # row f is DCT-II basis vector f
        f = torch.arange(n)
        rows = tm._dct_rows(f, torch.full((n,), n), n + 3)
        torch.testing.assert_close(rows[:, :n], dense, rtol=0, atol=1e-14)
        assert torch.equal(rows[:, n:], torch.zeros(n, 3, dtype=F64))


# --- SSRFT -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 97, 1000, 1031])
def test_ssrft_rows_orthonormal(dim: int) -> None:
    phi = SSRFT(dim, seed=3)
    r = phi.rows(0, dim, dtype=F64)  # (dim, dim); columns are the rows of Φ
    torch.testing.assert_close(r.T @ r, torch.eye(dim, dtype=F64), rtol=0, atol=1e-12)
    r32 = phi.rows(0, dim)
    torch.testing.assert_close(r32.T @ r32, torch.eye(dim), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dim", [65537, 1_000_003])
def test_ssrft_rows_orthonormal_large_prime_dim(dim: int) -> None:
    phi = SSRFT(dim, seed=1)
    picks = [0, 1, 2, 40, dim // 2, dim - 1]  # rows anywhere in the permutation
    r = torch.cat([phi.rows(i, i + 1, dtype=F64) for i in picks], dim=1)
    torch.testing.assert_close(r.T @ r, torch.eye(len(picks), dtype=F64), rtol=0, atol=1e-12)
    # Rows are spread out: no entry near 1 (an un-mixed row would be a coordinate vector).
    assert float(r.abs().max()) < 0.05


def test_ssrft_geometry_mixes_at_least_2d_inputs() -> None:
    for dim in (1, 2, 5, 97, 1000, 1031, 65537, 1_000_135, 895_210, 4_000_000, 10_000_000):
        a, b, split, n2 = tm._ssrft_geometry(dim)
        chunk = a * b
        assert chunk >= min(1024, math.sqrt(dim)) and a in (b, 2 * b)  # square-ish GEMM factors
        assert split % chunk == 0 and 0 <= split <= dim
        assert dim - split == dim or chunk <= dim - split < 2 * chunk  # no short C1 chunk
        if split:  # each C2 output reads ~2·dim/L1 coordinates of C1's output, ~2·dim inputs
            assert chunk * (dim // n2) >= 1.9 * dim


# --- Every kind --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_apply_matches_rows(kind: str) -> None:
    dim = 97
    phi = _make(kind, dim, seed=11, rows=300 if kind == "sparse-sign" else ROWS)
    # Past 256 rows for the i.i.d. kinds so apply's row blocks are exercised.
    n = dim if kind == "ssrft" else 300
    x = _randn(dim, 5, seed=2)
    r = phi.rows(0, n, dtype=F64)
    y = phi.apply(x, n)
    assert y.shape == (n, 5) and y.dtype == F64
    torch.testing.assert_close(y, r.T @ x, rtol=0, atol=1e-12)
    # Prefix consistency: fewer rows = leading rows of the full answer.
    torch.testing.assert_close(phi.apply(x, 10), y[:10], rtol=0, atol=1e-12)
    assert phi.apply(x, 0).shape == (0, 5)
    assert phi.apply(x[:, :0], 4).shape == (4, 0)
    # float32 in, float32 out, agreeing to single precision.
    y32 = phi.apply(x.float(), n)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_rows_independent_of_block_and_coords(kind: str) -> None:
    dim = 1031
    phi = _make(kind, dim, seed=4)
    full = phi.rows(0, ROWS, dtype=F64)
    for a, b in [(0, 1), (3, 10), (17, 60), (59, 60), (20, 20)]:
        _same(kind, phi.rows(a, b, dtype=F64), full[:, a:b])
    for coords in [slice(0, 1), slice(5, 500), slice(900, None), slice(None, 64), slice(-3, None)]:
        _same(kind, phi.rows(7, 41, dtype=F64, coords=coords), full[coords, 7:41])
    assert phi.rows(0, 3, coords=slice(10, 10)).shape == (0, 3)
    # A fresh instance reproduces the same vectors.
    assert torch.equal(_make(kind, dim, seed=4).rows(0, ROWS, dtype=F64), full)
    # float32: the rounded float64 rows for the hash kinds; SSRFT works in float32 itself.
    r32 = phi.rows(5, 9)
    assert r32.dtype == torch.float32
    if kind in EXACT_KINDS:
        assert torch.equal(r32, full[:, 5:9].float())
    else:
        torch.testing.assert_close(r32.double(), full[:, 5:9], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_tiny_workspace_gives_the_same_result(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dim = 1031
    phi = _make(kind, dim, seed=8)
    x = _randn(dim, 6, seed=3)
    rows, out = phi.rows(0, ROWS, dtype=F64), phi.apply(x, ROWS)
    # Sub-blocks of one column / a few hundred coordinates; CSR blocks of 100 (sparse-sign)
    # and C1 units of two chunks (SSRFT).
    monkeypatch.setattr(tm, "WORKSPACE_BYTES", 4096)
    monkeypatch.setattr(tm, "_TILE_BYTES", 2048)
    monkeypatch.setattr(tm, "_SPARSE_TILE", 100)
    monkeypatch.setattr(tm, "_SSRFT_UNIT", 128)
    fresh = _make(kind, dim, seed=8)
    _same(kind, fresh.rows(0, ROWS, dtype=F64), rows)
    torch.testing.assert_close(fresh.apply(x, ROWS), out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_seed_determinism(kind: str) -> None:
    a = _make(kind, 64, seed=1).rows(0, 8, dtype=F64)
    b = _make(kind, 64, seed=1).rows(0, 8, dtype=F64)
    c = _make(kind, 64, seed=2).rows(0, 8, dtype=F64)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Distinct rows within one matrix too.
    assert not torch.allclose(a[:, 0], a[:, 1])


def test_sub_block_width_respects_the_budget() -> None:
    for unit in (1, 3, 8, 4096, 10_000_000 * 8, 2**40):
        for budget in (1, 7, 4096, WORKSPACE_BYTES):
            width = tm._sub_block_width(unit, budget)
            assert width >= 1
            # Within budget unless one unit alone is over it; and as wide as the budget allows.
            assert width * unit <= budget or (width == 1 and unit > budget)
            assert (width + 1) * unit > budget
    with pytest.raises(ValueError, match="unit_bytes >= 1"):
        tm._sub_block_width(0, 10)


def test_ssrft_units_fit_the_tile_budget() -> None:
    # rows/apply hold a few (unit × vectors) temporaries, never D × anything; the vectors per
    # pass come from _sub_block_width so each temporary stays within _TILE_BYTES.
    for dim in (97, 1031, 1_000_135):
        phi = SSRFT(dim, seed=0)
        units = phi._units(0, dim)
        assert units[0][0] == 0 and units[-1][1] == dim
        assert all(u[1] == v[0] for u, v in itertools.pairwise(units))
        longest = max(c1 - c0 for c0, c1 in units)
        for itemsize in (4, 8):
            width = phi._vectors_per_block(itemsize)
            assert width * longest * itemsize <= tm._TILE_BYTES or width == 1
        assert phi._units(5, 6) == [units[0]]  # only the unit that holds the range


# --- Kinds, registry and moments ---------------------------------------------------------


def test_kinds_and_attributes() -> None:
    assert TEST_MATRIX_KINDS == ("ssrft", "gaussian", "rademacher", "sparse-sign")
    assert "sparse-sign" in TEST_MATRIX_KINDS and len(TEST_MATRIX_KINDS) == 4
    classes = (SSRFT, Gaussian, Rademacher, SparseSign)
    for kind, cls in zip(TEST_MATRIX_KINDS, classes, strict=True):
        phi = make_test_matrix(kind, 33, seed=7, rows=20)
        assert isinstance(phi, cls) and isinstance(phi, TestMatrix)
        assert (phi.kind, phi.dim, phi.seed) == (kind, 33, 7)
        assert phi.max_rows == {"ssrft": 33, "sparse-sign": 20}.get(kind, 2**62)
    g = Gaussian(33, 7).rows(0, 4, dtype=F64)
    assert not torch.allclose(g, Rademacher(33, 7).rows(0, 4, dtype=F64))


def test_register_a_new_kind() -> None:
    @register_test_matrix("identity-rows")
    class IdentityRows(TestMatrix):
        def __init__(self, dim: int, seed: int, rows: int | None = None) -> None:
            super().__init__(dim, seed, max_rows=dim)

        def _rows(self, start, stop, lo, hi, dtype, device):  # type: ignore[no-untyped-def]
            return torch.eye(self.dim, dtype=dtype, device=device)[lo:hi, start:stop]

        def _apply(self, x, n_rows):  # type: ignore[no-untyped-def]
            return x[:n_rows].clone()

    try:
        assert TEST_MATRIX_KINDS[-1] == "identity-rows"
        phi = make_test_matrix("identity-rows", 5, 0)
        assert phi.kind == "identity-rows"
        assert torch.equal(phi.rows(1, 3, coords=slice(0, 2)), torch.eye(5)[:2, 1:3])
        with pytest.raises(ValueError, match="already registered"):
            register_test_matrix("identity-rows")(IdentityRows)
    finally:
        del tm._REGISTRY["identity-rows"]
    assert "identity-rows" not in TEST_MATRIX_KINDS
    with pytest.raises(ValueError, match="TestMatrix subclasses"):
        register_test_matrix("x")(int)  # type: ignore[arg-type]


def test_gaussian_moments() -> None:
    dim, n = 256, 400
    r = Gaussian(dim, seed=0).rows(0, n, dtype=F64) * math.sqrt(dim)  # N(0, 1) entries
    # Sample moments of m = dim·n = 102400 standard normals: std of the mean 1/sqrt(m) ≈ 0.003,
    # of the variance sqrt(2/m) ≈ 0.0044, of the 4th moment sqrt(96/m) ≈ 0.03: bounds ~5-6 std.
    assert abs(float(r.mean())) < 0.016
    assert abs(float(r.square().mean()) - 1.0) < 0.025
    assert abs(float(r.pow(4).mean()) - 3.0) < 0.2
    # Box–Muller pairs are independent: correlation of even and odd vectors ~ 0.
    assert abs(float((r[:, 0::2] * r[:, 1::2]).mean())) < 0.02
    # Tail mass beyond 2σ: 4.55 % ± 0.07 %.
    assert abs(float((r.abs() > 2).double().mean()) - 0.0455) < 0.004


def test_rademacher_entries_exact_and_balanced() -> None:
    dim = 97
    phi = Rademacher(dim, seed=9)
    r = phi.rows(0, 130, dtype=F64)  # crosses a 64-vector hash word
    assert torch.equal(r.abs(), torch.full_like(r, 1 / math.sqrt(dim)))
    r32 = phi.rows(0, 50)
    assert torch.equal(r32.abs(), torch.full_like(r32, 1 / math.sqrt(dim)))
    # Fraction of + signs: 0.5 ± 5 std (std = 0.5 / sqrt(12610) ≈ 0.0045).
    assert abs(float((r > 0).double().mean()) - 0.5) < 0.022


def test_sparse_sign_structure() -> None:
    dim, s = 500, 40
    phi = SparseSign(dim, seed=2, rows=s)
    assert phi.zeta == 8 and phi.max_rows == s
    r = phi.rows(0, s, dtype=F64)  # (dim, s) = Φᵀ
    nonzero = r != 0
    # Exactly ζ nonzeros per column of Φ, each ±1/√ζ, so diag(ΦᵀΦ) = 1 exactly.
    assert torch.equal(nonzero.sum(1), torch.full((dim,), 8))
    assert torch.equal(r[nonzero].abs(), torch.full((8 * dim,), 1 / math.sqrt(8), dtype=F64))
    torch.testing.assert_close((r * r).sum(1), torch.ones(dim, dtype=F64), rtol=0, atol=1e-15)
    # Rows of Φ hold ζ·D/s = 100 entries on average; each row count is Binomial(500, 1/5).
    counts = nonzero.sum(0).double()
    assert float(counts.sum()) == 8 * dim
    assert float(counts.min()) > 100 - 6 * 9 and float(counts.max()) < 100 + 6 * 9
    assert 0.4 < float((r > 0).double().sum() / nonzero.sum()) < 0.6
    # s < 8 gives ζ = s: every column is full.
    small = SparseSign(30, seed=0, rows=3)
    assert small.zeta == 3 and bool((small.rows(0, 3, dtype=F64) != 0).all())


def test_sparse_sign_gram_is_identity_on_average() -> None:
    # E[ΦᵀΦ] = I: off-diagonal entries average to 0 over seeds (each is ±1/8 or 0 with mean 0,
    # ~ζ²/s = 2.1 terms per entry at s = 30, so std per seed ≈ 0.18, over 100 seeds ≈ 0.018).
    dim, s, seeds = 12, 30, 100
    gram = sum(
        (lambda r: r @ r.T)(SparseSign(dim, seed=k, rows=s).rows(0, s, dtype=F64))
        for k in range(seeds)
    )
    gram = gram / seeds
    torch.testing.assert_close(gram.diagonal(), torch.ones(dim, dtype=F64), rtol=0, atol=1e-14)
    off = gram - torch.diag(gram.diagonal())
    assert float(off.abs().max()) < 0.1


def test_sparse_sign_rows_are_uniform_subsets() -> None:
    # Floyd's algorithm: every row is equally likely, for every column.
    dim, s = 20_000, 10
    phi = SparseSign(dim, seed=5, rows=s)
    counts = (phi.rows(0, s, dtype=F64) != 0).sum(0).double()
    # Each count ~ Binomial(dim, ζ/s = 0.8): mean 16000, std ≈ 57.
    assert float((counts - 16_000).abs().max()) < 6 * 57


def test_bad_arguments() -> None:
    phi = SSRFT(70, seed=0)
    with pytest.raises(ValueError, match=r"SSRFT has at most 70 rows \(dim\); asked for rows"):
        phi.rows(0, 80)
    with pytest.raises(ValueError, match=r"at most 70 rows .*\[0, 71\)"):
        phi.apply(torch.zeros(70, 2), 71)
    with pytest.raises(ValueError, match="0 <= start <= stop"):
        phi.rows(5, 4)
    with pytest.raises(ValueError, match="0 <= start <= stop"):
        phi.rows(-1, 4)
    with pytest.raises(ValueError, match="0 <= start <= stop"):
        phi.rows(0, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floating"):
        phi.rows(0, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="coords must be a slice with step 1"):
        phi.rows(0, 2, coords=slice(0, 10, 2))
    with pytest.raises(ValueError, match="coords must be a slice with step 1"):
        phi.rows(0, 2, coords=range(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int \\(or None\\) start and stop"):
        phi.rows(0, 2, coords=slice(0.5, 3))
    with pytest.raises(ValueError, match=r"shape \(70, m\), got \(69, 2\)"):
        phi.apply(torch.zeros(69, 2), 3)
    with pytest.raises(ValueError, match=r"shape \(70, m\)"):
        phi.apply(torch.zeros(70), 3)
    with pytest.raises(ValueError, match="float32 or float64"):
        phi.apply(torch.zeros(70, 2, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="n_rows"):
        phi.apply(torch.zeros(70, 2), -1)
    with pytest.raises(ValueError, match="Gaussian has at most"):
        Gaussian(5, 0).rows(0, 2**62 + 1)
    with pytest.raises(ValueError, match="SparseSign has at most 4 rows; asked"):
        SparseSign(10, 0, rows=4).rows(0, 5)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        make_test_matrix("gaussian", 0, 0)
    with pytest.raises(ValueError, match="seed must be an int"):
        Rademacher(4, True)
    with pytest.raises(ValueError, match="sparse-sign needs the number of rows"):
        make_test_matrix("sparse-sign", 10, 0)
    with pytest.raises(ValueError, match="rows \\(the number of rows s\\) must be"):
        make_test_matrix("ssrft", 10, 0, rows=0)
    with pytest.raises(
        ValueError,
        match=r"expected one of \('ssrft', 'gaussian', 'rademacher', 'sparse-sign'\)",
    ):
        make_test_matrix("srft", 4, 0)


def test_half_precision_rows_are_rounded() -> None:
    phi = Rademacher(50, seed=1)
    assert torch.equal(phi.rows(0, 3, dtype=torch.bfloat16), phi.rows(0, 3).bfloat16())


# --- CUDA ----------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_cuda_matches_cpu(kind: str) -> None:
    dim = 1031
    phi = _make(kind, dim, seed=5)
    cpu = phi.rows(3, 40, dtype=F64)
    gpu = phi.rows(3, 40, dtype=F64, device="cuda")
    assert gpu.device.type == "cuda"
    if kind in ("rademacher", "sparse-sign"):  # integer-exact construction
        assert torch.equal(gpu.cpu(), cpu)
    else:  # CUDA's float64 log/cos/sin and GEMMs may differ from the CPU's in the last ulp
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-14)
    part = phi.rows(3, 40, dtype=F64, device="cuda", coords=slice(100, 300))
    torch.testing.assert_close(part.cpu(), cpu[100:300], rtol=0, atol=1e-14)
    x = _randn(dim, 3, seed=6)
    torch.testing.assert_close(phi.apply(x.cuda(), 40).cpu(), phi.apply(x, 40), rtol=0, atol=1e-12)
    y32 = phi.apply(x.float().cuda(), 40).cpu().double()
    torch.testing.assert_close(y32, phi.apply(x, 40), rtol=0, atol=1e-5)


@cuda
def test_cuda_hash_is_bit_identical() -> None:
    keys = tm._stream_keys(123, 0, 7, torch.device("cuda"))
    assert torch.equal(keys.cpu(), tm._stream_keys(123, 0, 7, torch.device("cpu")))
    assert torch.equal(tm._hash_grid(keys, 5, 900).cpu(), tm._hash_grid(keys.cpu(), 5, 900))


@cuda
def test_cuda_dct_matches_cpu() -> None:
    x = _randn(1000, 3, seed=6)
    torch.testing.assert_close(dct_ortho(x.cuda(), 0).cpu(), dct_ortho(x, 0), rtol=0, atol=1e-13)
