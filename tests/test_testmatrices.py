from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from hessketch.testmatrices import (
    SSRFT,
    TEST_MATRIX_KINDS,
    Gaussian,
    Rademacher,
    TestMatrix,
    dct_ortho,
    derive_seed,
    idct_ortho,
    make_test_matrix,
)

F64 = torch.float64
SIZES = [1, 2, 3, 7, 16, 97, 256, 1000]


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=F64).to(dtype)


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    b_t = torch.from_numpy(np.asarray(b)).to(F64)
    return float((a.to(F64) - b_t).abs().max() / b_t.abs().max())


# --- derive_seed -------------------------------------------------------------------------


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


# --- DCT ---------------------------------------------------------------------------------


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


# --- Test matrices -----------------------------------------------------------------------


@pytest.mark.parametrize("dim", [97, 256])
def test_ssrft_rows_orthonormal(dim: int) -> None:
    phi = SSRFT(dim, seed=3)
    for s in (dim, dim // 3):
        r = phi.rows(0, s, dtype=F64)  # (dim, s); columns are the rows of Φ
        assert r.shape == (dim, s)
        torch.testing.assert_close(r.T @ r, torch.eye(s, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_apply_matches_rows(kind: str) -> None:
    dim = 97
    phi = make_test_matrix(kind, dim, seed=11)
    # Past 256 rows for the i.i.d. kinds so apply's blocking is exercised.
    n = dim if kind == "ssrft" else 300
    x = _randn(dim, 5, seed=2)
    r = phi.rows(0, n, dtype=F64)
    y = phi.apply(x, n)
    assert y.shape == (n, 5) and y.dtype == F64
    torch.testing.assert_close(y, r.T @ x, rtol=0, atol=1e-12)
    # Prefix consistency: fewer rows = leading rows of the full answer.
    torch.testing.assert_close(phi.apply(x, 10), y[:10], rtol=0, atol=1e-12)
    assert phi.apply(x, 0).shape == (0, 5)
    # float32 in, float32 out, agreeing to single precision.
    y32 = phi.apply(x.float(), n)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_rows_independent_of_block(kind: str) -> None:
    dim = 97
    phi = make_test_matrix(kind, dim, seed=4)
    full = phi.rows(0, 60, dtype=F64)
    for a, b in [(0, 1), (3, 10), (17, 60), (59, 60), (20, 20)]:
        part = phi.rows(a, b, dtype=F64)
        if kind == "ssrft":
            # Batched FFTs could in principle round differently per batch size.
            torch.testing.assert_close(part, full[:, a:b], rtol=0, atol=1e-15)
        else:
            assert torch.equal(part, full[:, a:b])
    # float32 rows are the float64 rows rounded once (always generated in float64).
    assert torch.equal(phi.rows(5, 9), full[:, 5:9].float())
    # A fresh instance reproduces the same vectors.
    assert torch.equal(make_test_matrix(kind, dim, seed=4).rows(0, 60, dtype=F64), full)


@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_seed_determinism(kind: str) -> None:
    a = make_test_matrix(kind, 64, seed=1).rows(0, 8, dtype=F64)
    b = make_test_matrix(kind, 64, seed=1).rows(0, 8, dtype=F64)
    c = make_test_matrix(kind, 64, seed=2).rows(0, 8, dtype=F64)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Distinct rows within one matrix too.
    assert not torch.allclose(a[:, 0], a[:, 1])


def test_kinds_and_attributes() -> None:
    assert TEST_MATRIX_KINDS == ("ssrft", "gaussian", "rademacher")
    for kind, cls in zip(TEST_MATRIX_KINDS, (SSRFT, Gaussian, Rademacher), strict=True):
        phi = make_test_matrix(kind, 33, seed=7)
        assert isinstance(phi, cls) and isinstance(phi, TestMatrix)
        assert (phi.kind, phi.dim, phi.seed) == (kind, 33, 7)
        assert phi.max_rows == (33 if kind == "ssrft" else 2**62)
    g = Gaussian(33, 7).rows(0, 4, dtype=F64)
    assert not torch.allclose(g, Rademacher(33, 7).rows(0, 4, dtype=F64))


def test_gaussian_row_norms() -> None:
    dim, n = 256, 400
    r = Gaussian(dim, seed=0).rows(0, n, dtype=F64)
    sq = (r**2).sum(dim=0)
    # ‖row‖² ~ χ²_dim/dim: mean 1, variance 2/dim, so the mean of n rows has
    # std sqrt(2/(dim n)) ≈ 0.0044; 0.03 is ~7 std (and the seed is fixed anyway).
    assert abs(float(sq.mean()) - 1.0) < 0.03
    # Entry mean 0 with std 1/sqrt(dim n · dim) ≈ 2.0e-4 per entry-average.
    assert abs(float(r.mean())) < 7 * (1 / math.sqrt(dim)) / math.sqrt(dim * n)


def test_rademacher_entries_exact() -> None:
    dim = 97
    phi = Rademacher(dim, seed=9)
    r = phi.rows(0, 50, dtype=F64)
    assert torch.equal(r.abs(), torch.full_like(r, 1 / math.sqrt(dim)))
    r32 = phi.rows(0, 50)
    assert torch.equal(r32.abs(), torch.full_like(r32, 1 / math.sqrt(dim)))
    assert 0 < int((r > 0).sum()) < r.numel()


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
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        make_test_matrix("gaussian", 0, 0)
    with pytest.raises(ValueError, match="seed must be an int"):
        Rademacher(4, True)
    with pytest.raises(ValueError, match=r"expected one of \('ssrft', 'gaussian', 'rademacher'\)"):
        make_test_matrix("srft", 4, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", TEST_MATRIX_KINDS)
def test_cuda_matches_cpu(kind: str) -> None:
    phi = make_test_matrix(kind, 1000, seed=5)
    cpu = phi.rows(3, 40, dtype=F64)
    gpu = phi.rows(3, 40, dtype=F64, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-14)
    x = _randn(1000, 3, seed=6)
    torch.testing.assert_close(phi.apply(x.cuda(), 40).cpu(), phi.apply(x, 40), rtol=0, atol=1e-12)
    torch.testing.assert_close(dct_ortho(x.cuda(), 0).cpu(), dct_ortho(x, 0), rtol=0, atol=1e-13)
