"""Certified eigenspaces against exact answers: matrices with known spectra (float64).

What must hold: the bound on ``‖sin Θ(Ŵ_j, W_j)‖_F`` is never below the true value (computed
from the exact eigenvectors, to round-off ~1e-14), the overlap interval always contains the
exact overlap, and where the spectrum has a gap the bound is within 10× of the truth.
Truth is ``‖W_⊥ᵀ Q_j‖_F`` with ``Q_j`` an orthonormal basis of the computed span.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_seigh import random_orthogonal

import hessketch
from hessketch.metrics import mask_overlap_curve
from hessketch.spacebound import chance_verdict, overlap_interval, space_bounds

F64 = torch.float64
D = 400


def spectrum(kind: str) -> torch.Tensor:
    """Eigenvalues of the test matrices (not sorted; top by |λ| includes negatives)."""
    gen = torch.Generator().manual_seed(5)
    bulk = torch.rand(D, generator=gen, dtype=F64) * 2 - 1  # wide bulk in [-1, 1]
    if kind == "gap":  # ten separated eigenvalues of both signs, then a gap to the bulk
        top = torch.tensor([10.0, -9, 8, 7.5, 7, -6.5, 6, 5.5, 5.2, 5.0], dtype=F64)
    elif kind == "clusters":  # a double eigenvalue 8 and a triple -6
        top = torch.tensor([10.0, 8, 8, -6, -6, -6, 4, 3.5], dtype=F64)
    elif kind == "split":  # the same, split by 1e-9: resolvable where residuals are smaller
        top = torch.tensor([10.0, 8, 8 + 1e-9, -6, -6 - 1e-9, -6 + 1e-9, 4, 3.5], dtype=F64)
    elif kind == "decaying":  # slowly decaying, no clear gap: the regime of large networks
        top = 5.0 * torch.arange(1, 31, dtype=F64) ** -0.5 * torch.tensor([1.0, -1]).repeat(15)
    else:
        raise ValueError(kind)
    bulk[: len(top)] = top
    return bulk


def problem(kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(H, λ sorted by descending |λ|, eigenvectors in that order)``."""
    lam = spectrum(kind)
    q = random_orthogonal(D, seed=11)
    order = torch.argsort(lam.abs(), descending=True, stable=True)
    return (q * lam) @ q.T, lam[order], q[:, order]


def true_sines(vectors: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``‖sin Θ(span vectors[:, :j], exact[:, :j])‖_F`` for every ``j``."""
    q, _ = torch.linalg.qr(vectors.to(F64))
    coefficients = exact.T @ q
    return torch.stack([coefficients[j:, :j].norm() for j in range(1, vectors.shape[1] + 1)])


def exact_overlaps(exact: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    return mask_overlap_curve(exact[mask[:k], :k], torch.arange(k))


RUNS = {  # name → decompose keywords (k = 20, s = 40)
    "one-pass": {"passes": 1},
    "krylov-3x10": {"passes": 3, "width": 10},
    "krylov-6x10": {"passes": 6, "width": 10},
    "krylov-12x10": {"passes": 12, "width": 10},
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("kind", ["gap", "clusters", "split", "decaying"])
def test_the_space_bound_is_never_below_the_truth(kind: str, run: str) -> None:
    a, lam, exact = problem(kind)
    d = hessketch.decompose(a, D, 20, 40, seed=3, **RUNS[run])
    c = d.certificate
    truth = true_sines(d.eigenvectors, exact)
    finite = torch.isfinite(c.space_bounds)
    # round-off of the truth itself: ~1e-14 (float64 QR and products)
    assert torch.all(c.space_bounds[finite] >= truth[finite] - 1e-13), (truth, c.space_bounds)
    # assumption (A) holds wherever a bound is given: μ̂_{j+1} ≥ |λ_{j+1}|
    for j in torch.nonzero(finite).flatten().tolist():
        assert float(c.space_next[j]) >= float(lam[j + 1].abs()) - 1e-12, j


def test_where_there_is_a_gap_the_bound_is_within_10x_of_the_truth() -> None:
    a, _, exact = problem("gap")
    for run in ("krylov-3x10", "krylov-6x10"):
        d = hessketch.decompose(a, D, 20, 40, seed=3, **RUNS[run])
        truth = true_sines(d.eigenvectors, exact)
        bound = d.certificate.space_bounds
        # j = 10: the gap between 5.0 and the bulk edge 1.0; a true error of at least 1e-10
        # (above the 1e-14 floor of products and truth alike)
        assert truth[9] > 1e-10, truth[9]
        assert truth[9] <= bound[9] <= 10 * truth[9], (run, float(truth[9]), float(bound[9]))
        assert d.certificate.space_gaps[9] > 3.0  # |θ_10| − μ̂_11 ≈ 5 − 1


def test_a_k_inside_a_cluster_is_not_certified_and_the_gaps_are_listed() -> None:
    a, _, _ = problem("clusters")
    d = hessketch.decompose(a, D, 20, 40, passes=12, width=10, seed=3)
    c = d.certificate
    # pairs: 10 | 8, 8 | -6 (triple) | 4 | 3.5 ...: j = 2, 4, 5 cut through a cluster
    for j in (2, 4, 5):
        assert math.isinf(float(c.space_bounds[j - 1])) and c.space_gaps[j - 1] <= 0
    # at the gaps around the clusters the spaces are certified, to round-off
    for j in (1, 3, 6, 7):
        assert c.space_bounds[j - 1] < 1e-8, (j, c.space_bounds[:8])
    info = c.to_dict()
    assert {1, 3, 6, 7} <= set(info["gaps_at"]) and not {2, 4, 5} & set(info["gaps_at"])
    assert [1, 1] in info["certified_ranges"] and [3, 3] in info["certified_ranges"]
    # the per-pair residuals say nothing about this: every pair is certified by backward error
    assert c.trusted_k == 20
    # split by 1e-9 instead: after 12 waves the residuals (~1e-14) resolve the split, and the
    # bound says so (it is never below the truth: test above); after 3 waves they do not
    a, _, _ = problem("split")
    resolved = hessketch.decompose(a, D, 20, 40, passes=12, width=10, seed=3).certificate
    assert torch.all(torch.isfinite(resolved.space_bounds[:7]))
    coarse = hessketch.decompose(a, D, 20, 40, passes=3, width=10, seed=3).certificate
    assert all(math.isinf(float(coarse.space_bounds[j - 1])) for j in (2, 4, 5))


def test_a_missed_eigenvalue_breaks_the_bound_which_is_why_it_is_assumed() -> None:
    """Assumption (A) is not vacuous: pairs of one block of a block-diagonal H see nothing of
    the other, whose top eigenvalue is larger; the bound then holds for the wrong space."""
    gen = torch.Generator().manual_seed(0)
    small = torch.rand(300, generator=gen, dtype=F64)
    small[:3] = torch.tensor([10.0, 9.0, 8.0])
    q = random_orthogonal(300, seed=2)
    block = (q * small) @ q.T
    h = torch.block_diag(block, torch.diag(torch.tensor([20.0] + [0.1] * 99, dtype=F64)))
    # exact eigenpairs of the first block, as if the measurements had never touched the second
    values = torch.tensor([10.0, 9.0, 8.0, float(small[3:].max())], dtype=F64)
    vectors = torch.cat([q[:, :4], torch.zeros(100, 4, dtype=F64)])
    vectors[:, 3] = torch.cat([q[:, 3 + int(small[3:].argmax())], torch.zeros(100, dtype=F64)])
    residuals = (h @ vectors - vectors * values).norm(dim=0)
    sb = space_bounds(values, residuals, product_error=1e-14)
    assert sb.bounds[0] < 1e-10  # the bound says the top-1 space is right ...
    # ... but the true top eigenvector is e_300 (λ = 20), orthogonal to the computed one
    assert float(vectors[300, 0]) == 0.0 and torch.linalg.eigvalsh(h).max() == 20.0
    assert sb.next_modulus[0] < 20.0  # and (A) is violated: |λ_2| = 10 > μ̂_2, yet λ_1 = 20


@pytest.mark.parametrize("kind", ["gap", "decaying"])
def test_the_overlap_interval_contains_the_exact_overlap(kind: str) -> None:
    a, _, exact = problem(kind)
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(D, generator=gen, dtype=F64)
    # a mask correlated with the top eigenvectors, as magnitude masks are, and a random one
    theta += 3 * exact[:, :5].abs().sum(1) / exact[:, :5].abs().sum(1).max()
    masks = [torch.argsort(theta.abs(), descending=True), torch.randperm(D, generator=gen)]
    for run in RUNS.values():
        d = hessketch.decompose(a, D, 20, 40, seed=3, **run)
        c = d.certificate
        for mask in masks:
            computed = mask_overlap_curve(d.eigenvectors.to(F64)[mask[:20]], torch.arange(20))
            low, high = overlap_interval(
                computed, c.space_bounds, orthonormality=c.orthonormality, rounding=c.rounding
            )
            true = exact_overlaps(exact, mask, 20)
            assert torch.all(low <= true + 1e-13) and torch.all(true <= high + 1e-13), run


def test_the_overlap_identity_on_random_subspaces() -> None:
    """|√(k·ov̂) − √(k·ov)| ≤ ‖sin Θ‖_F for any mask, and |k·ov̂ − k·ov| ≤ √k‖sin Θ‖_F."""
    gen = torch.Generator().manual_seed(2)
    for trial in range(200):
        k, dim = int(torch.randint(1, 12, (1,), generator=gen)), 60
        w, _ = torch.linalg.qr(torch.randn(dim, k, generator=gen, dtype=F64))
        noise = 10.0 ** float(torch.empty(1).uniform_(-6, 0, generator=gen))
        v, _ = torch.linalg.qr(w + noise * torch.randn(dim, k, generator=gen, dtype=F64))
        sine = float((v - w @ (w.T @ v)).norm())
        mask = torch.randperm(dim, generator=gen)[:k]
        ov_w, ov_v = float(w[mask].square().sum()), float(v[mask].square().sum())
        assert abs(math.sqrt(ov_w) - math.sqrt(ov_v)) <= sine + 1e-12, trial
        assert abs(ov_w - ov_v) <= math.sqrt(k) * sine + 1e-12, trial
        low, high = overlap_interval(
            torch.tensor([0.0] * (k - 1) + [ov_v / k]), torch.full((k,), sine)
        )
        assert float(low[-1]) <= ov_w / k + 1e-12 <= float(high[-1]) + 2e-12


def test_interval_edges_and_the_chance_verdict() -> None:
    ov = torch.tensor([0.5, 0.25, 0.1])
    low, high = overlap_interval(ov, torch.tensor([0.0, math.inf, 0.05]))
    # an exact space: a point (rounded outwards by an ulp at most)
    assert float(low[0]) == 0.5 and float(high[0]) == pytest.approx(0.5, rel=1e-15, abs=0)
    assert float(low[1]) == 0.0 and float(high[1]) == 1.0  # no bound: no information
    assert float(low[2]) < 0.1 < float(high[2])
    assert chance_verdict(0.2, 0.3, 0.1) == "above"
    assert chance_verdict(0.01, 0.05, 0.1) == "below"
    assert chance_verdict(0.05, 0.2, 0.1) == "undetermined"


def test_adaptive_runs_stop_at_the_target_or_the_budget() -> None:
    a, _, exact = problem("gap")
    met = hessketch.decompose(a, D, 20, 40, seed=3, max_hvps=400, target=10, width=10)
    assert met.stopped == "target met"
    assert met.certificate.space_bounds[9] <= met.certificate.space_tolerance
    assert met.hvps["measurement"] <= 60  # converges at the gap in a few waves
    truth = true_sines(met.eigenvectors, exact)
    assert truth[9] <= met.certificate.space_bounds[9]
    # the history: one decision per wave, the last one the stop
    assert [h["reason"] for h in met.history][-1] == "target met"
    assert all(h["reason"] == "continue" for h in met.history[:-1])
    # within the decaying spectrum, a small budget runs out first and says so
    a, _, _ = problem("decaying")
    short = hessketch.decompose(a, D, 20, 40, seed=3, max_hvps=35, width=10)
    assert short.stopped == "budget spent" and short.hvps["measurement"] == 35
    assert short.certificate.space_k < 20
    with pytest.raises(ValueError, match="max_hvps"):
        hessketch.decompose(a, D, 20, 40, target=10)
    with pytest.raises(ValueError, match="target must be"):
        hessketch.decompose(a, D, 20, 40, target=30, max_hvps=100)
