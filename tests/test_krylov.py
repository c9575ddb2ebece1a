"""Block Krylov (``passes > 1``) and certificates on matrices with known spectra (float64).

Tolerances: Ritz values are checked against the rigorous residual bound (some eigenvalue lies
within ``‖Hw − θw‖`` of ``θ``) and against the exact spectrum at round-off level where the
Krylov space has converged; certificate residuals against dense ones to 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from test_seigh import matrix, random_orthogonal, spectrum

from hessketch.certificate import certify
from hessketch.krylov import InMemoryBasis, next_block, plan_next_block
from hessketch.ritz import rayleigh_ritz
from hessketch.seigh import decompose, seigh

F64 = torch.float64


def wide_bulk(dim: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten separated eigenvalues on top of a wide bulk uniform in [-1, 1]: the regime of large
    networks, where a one-pass sketch invents eigenvalues (the top 10 hold a small share of
    ‖H‖_F²)."""
    gen = torch.Generator().manual_seed(3)
    q = random_orthogonal(dim, seed=3)
    spikes = torch.tensor([8.0, 7, 6, 5, 4.5, 4, 3.5, 3, 2.5, -2.2], dtype=F64)
    bulk = torch.rand(dim - 10, generator=gen, dtype=F64) * 2 - 1
    lam = torch.cat([spikes, bulk])
    return (q * lam) @ q.T, lam


def nearest_distance(values: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    return (values[:, None] - spectrum[None, :]).abs().min(dim=1).values


@pytest.mark.parametrize("case", ["polynomial", "exponential", "lowrank+noise"])
def test_krylov_recovers_known_spectra_to_round_off(case: str) -> None:
    lam = spectrum(case)
    a, _ = matrix(lam)
    top = lam[torch.argsort(lam.abs(), descending=True)]
    d = decompose(a, 300, 20, 40, passes=4, width=20, seed=1)
    # 80 products for 20 pairs: the top 10 have converged to round-off
    torch.testing.assert_close(d.eigenvalues[:10], top[:10], atol=1e-10, rtol=1e-10)
    # residuals certify every pair: an eigenvalue within the residual (plus round-off)
    c = d.certificate
    assert torch.all(nearest_distance(d.eigenvalues, lam) <= c.residual_norms + 1e-12)
    # at most 80 products: directions already in the span (the noise floor) are not measured
    assert c.trusted_k == 20 and c.hvps == 0 and d.hvps["measurement"] <= 80


def test_ritz_residuals_are_the_true_residuals() -> None:
    lam = spectrum("exponential")
    a, _ = matrix(lam)
    d = decompose(a, 300, 20, 40, passes=2, width=20, seed=2)
    w = d.eigenvectors
    true = (a @ w - w * d.eigenvalues).norm(dim=0)
    torch.testing.assert_close(d.certificate.residual_norms, true, atol=1e-12, rtol=0)
    torch.testing.assert_close(w.T @ w, torch.eye(20, dtype=F64), atol=1e-12, rtol=0)
    # a verification wave on the same pairs gives the same certificate
    again = certify(a.__matmul__, d.eigenvalues, w)
    torch.testing.assert_close(again.residual_norms, true, atol=1e-12, rtol=0)
    torch.testing.assert_close(again.rayleigh, d.eigenvalues, atol=1e-12, rtol=0)


def test_one_pass_on_a_wide_bulk_is_flagged_and_krylov_is_certified() -> None:
    a, lam = wide_bulk()
    one_pass = decompose(a, 3000, 20, 40, seed=1)
    # the one-pass sketch invents eigenvalues of magnitude > 8 out of a bulk in [-1, 1] ...
    assert float(one_pass.eigenvalues.abs().max()) > 10
    # ... and says so: the probes show Ĥ farther from H than zero, so nothing is certified
    c = one_pass.certificate
    assert not c.checks["residual_energy"]["passed"]
    assert c.trusted_k == 0 and "UNTRUSTWORTHY" in c.verdict
    assert c.hvps == 20 and one_pass.hvps == {"measurement": 50, "certificate": 20}
    krylov = decompose(a, 3000, 20, 40, passes=8, width=20, seed=1)
    # 160 products: the 10 separated eigenvalues to 1e-5 (the last, -2.2, is nearest the bulk)
    torch.testing.assert_close(krylov.eigenvalues[:10], lam[:10], atol=1e-5, rtol=0)
    assert krylov.certificate.trusted_k == 20


def test_invariant_start_stops_early_and_is_exact() -> None:
    # rank 6: after one wave of 8 the Krylov space is invariant, later waves add nothing
    q = random_orthogonal(50, seed=5)
    lam = torch.tensor([5.0, -4, 3, 2, -1, 0.5] + [0.0] * 44, dtype=F64)
    a = (q * lam) @ q.T
    d = decompose(a, 50, 6, 8, passes=3, width=8, seed=0)
    # wave 1 adds the 6 directions of range(H); the third wave finds nothing new to measure
    assert d.hvps["measurement"] == 8 + 6
    torch.testing.assert_close(d.eigenvalues, lam[:6], atol=1e-12, rtol=0)
    assert d.certificate.trusted_k == 6


def test_streaming_does_not_change_the_answer() -> None:
    lam = spectrum("polynomial")
    a, _ = matrix(lam)
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(300, 12, generator=gen, dtype=F64)

    def run(budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        basis = InMemoryBasis(300, 36, F64)
        del basis.row_block  # force row blocks of the budget
        basis.append(start, a @ start)
        for _ in range(2):
            new = torch.empty(300, 12, dtype=F64)
            assert next_block(basis, lambda r, v, out=new: out[r].copy_(v), budget=budget) == 12
            basis.append(new, a @ new)
        ritz = rayleigh_ritz(basis, 10, budget=budget)
        return ritz.eigenvalues, ritz.residual_norms

    whole, streamed = run(2**30), run(32 * 36 * 7)  # 7 rows per block
    torch.testing.assert_close(whole[0], streamed[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(whole[1], streamed[1], atol=1e-12, rtol=0)


def test_new_blocks_are_orthonormal_and_orthogonal_to_the_basis() -> None:
    lam = spectrum("exponential")
    a, _ = matrix(lam)
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(300, 10, generator=gen, dtype=F64)  # not orthonormal: Gram metric
    basis = InMemoryBasis(300, 20, F64)
    basis.append(start, a @ start)
    plan = plan_next_block(basis)
    new = (a @ start - start @ plan.coef) @ plan.transform
    torch.testing.assert_close(new.T @ new, torch.eye(10, dtype=F64), atol=1e-12, rtol=0)
    assert float((start.T @ new).abs().max()) < 1e-12


def test_same_seed_same_bits_and_seigh_passes() -> None:
    lam = spectrum("polynomial")
    a, _ = matrix(lam)
    first = seigh(a.float(), 300, 10, 20, passes=3, seed=4)
    second = seigh(a.float(), 300, 10, 20, passes=3, seed=4)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].dtype == torch.float32 and first[1].shape == (300, 10)


def test_bad_arguments_are_refused() -> None:
    a, _ = matrix(spectrum("polynomial"))
    with pytest.raises(ValueError, match="passes"):
        decompose(a, 300, 10, 20, passes=0)
    with pytest.raises(ValueError, match="width"):
        decompose(a, 300, 10, 20, passes=2, width=4)  # 8 directions < k
