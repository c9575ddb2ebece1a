"""Masks as a registry: the best k-subset against brute force, best ≥ magnitude ≥ 0, random
masks averaging to chance, the loss gradient and the GGN diagonal against dense references."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_curvature import reference_ggn, tiny_problem
from torch import nn
from torch.func import functional_call, grad

import hessketch.hessian
from hessketch.masks import (
    MASKS,
    MaskContext,
    best_mask_curve,
    column,
    mask_problems,
    random_mask_moments,
    register_mask,
)
from hessketch.metrics import magnitude_order, mask_overlap_curve
from hessketch.models import unflatten_params

F64 = torch.float64


def orthonormal(dim: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, k, generator=gen, dtype=F64))
    return q


def context_of(w: torch.Tensor, theta: torch.Tensor, **kw) -> MaskContext:
    """A context over eigenvectors ``w`` with exact spaces (zero-width intervals)."""
    return MaskContext(
        theta=theta,
        kmax=w.shape[1],
        rows=lambda idx: w[idx],
        row_blocks=lambda: iter(w.split(7)),  # blocks of 7 rows: the streaming path
        interval=lambda c: (c.clone(), c.clone()),
        **kw,
    )


def test_best_mask_is_the_best_subset_by_brute_force() -> None:
    w = orthonormal(9, 4, seed=0)
    curve = best_mask_curve(iter(w.split(2)), 4)
    for k in range(1, 5):
        brute = max(
            float((w[list(s), :k] ** 2).sum()) / k for s in itertools.combinations(range(9), k)
        )
        assert float(curve[k - 1]) == pytest.approx(brute, rel=1e-12)
    torch.testing.assert_close(best_mask_curve(iter([w]), 4), curve, rtol=1e-14, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_best_bounds_every_mask_and_every_overlap_is_in_0_1(seed: int) -> None:
    w = orthonormal(300, 40, seed)
    theta = torch.randn(300, generator=torch.Generator().manual_seed(seed + 10), dtype=F64)
    context = context_of(w, theta, seed=seed, random_masks=5, gradient_fn=lambda: theta**3)
    magnitude = mask_overlap_curve(w[magnitude_order(theta)[:40]], torch.arange(40))
    best = MASKS["best"](context).overlap
    for name in ("random", "gradient"):
        other = MASKS[name](context).overlap
        assert torch.all(other <= best + 1e-12) and torch.all(other >= 0), name
    assert torch.all(magnitude <= best + 1e-12) and torch.all(magnitude >= 0)
    assert torch.all(best <= 1 + 1e-12)


def test_random_masks_sit_on_chance_within_two_standard_errors() -> None:
    """E[overlap] = k/D for any orthonormal basis; the mean of 10 masks lies within 2 of its
    (exact) standard errors of it at each k of the reporting grid."""
    dim, kmax = 2000, 100
    w = orthonormal(dim, kmax, seed=4)
    curves = MASKS["random"](context_of(w, torch.zeros(dim), seed=0, random_masks=10))
    sem = curves.extra["random_mask_sem"]
    for k in (1, 2, 5, 10, 20, 50, 100):
        assert abs(float(curves.overlap[k - 1]) - k / dim) <= 2 * float(sem[k - 1]), k
    assert torch.all(curves.extra["random_mask_std"] > 0)


def test_the_random_interval_is_the_mean_of_the_draws_intervals() -> None:
    w = orthonormal(50, 5, seed=1)
    context = context_of(w, torch.zeros(50), random_masks=3)
    context.interval = lambda c: (c / 2, c * 2)
    curves = MASKS["random"](context)
    torch.testing.assert_close(curves.low, curves.overlap / 2)
    torch.testing.assert_close(curves.high, curves.overlap * 2)


def test_the_loss_gradient_matches_autograd() -> None:
    model, theta, x, y = tiny_problem()

    def loss(flat):
        return nn.functional.cross_entropy(
            functional_call(model, unflatten_params(model, flat), (x,)), y
        )

    op = hessketch.hessian.HessianOperator(model, theta, x, y, batch_size=7, dtype=F64)
    torch.testing.assert_close(op.gradient(), grad(loss)(theta), rtol=1e-12, atol=1e-14)


def test_the_ggn_diagonal_is_the_dense_diagonal(monkeypatch) -> None:
    model, theta, x, y = tiny_problem()
    op = hessketch.hessian.GGNOperator(model, theta, x, y, batch_size=10, dtype=F64)
    exact = torch.diagonal(reference_ggn(model, theta, x, y))
    torch.testing.assert_close(hessketch.hessian.ggn_diagonal(op), exact, rtol=1e-12, atol=1e-15)
    # a few points at a time when the Jacobians would not fit
    monkeypatch.setattr(hessketch.hessian, "JACOBIAN_BYTES", 3 * 3 * theta.numel() * 8)
    torch.testing.assert_close(hessketch.hessian.ggn_diagonal(op), exact, rtol=1e-12, atol=1e-15)


def test_registry_errors() -> None:
    assert {"random", "best", "gradient", "ggn-diagonal"} <= set(MASKS)
    assert mask_problems(["random", "best"]) == []
    (problem,) = mask_problems(["random", "largest"])
    assert problem.startswith("overlap.masks: unknown mask 'largest'") and "'best'" in problem
    assert mask_problems(["best", "best"]) == ["overlap.masks: ['best'] listed more than once"]
    with pytest.raises(ValueError, match="always computed"):
        register_mask("magnitude")
    with pytest.raises(ValueError, match="already registered"):
        register_mask("best")(lambda c: None)  # type: ignore[arg-type,return-value]
    assert column("ggn-diagonal") == "ggn_diagonal_mask_overlap"


def test_a_new_mask_is_one_registered_function() -> None:
    @register_mask("smallest-test")
    def smallest(context: MaskContext):
        return context.fixed_order(torch.flip(magnitude_order(context.theta), (0,)))

    try:
        w = orthonormal(30, 4, seed=2)
        theta = torch.arange(30, dtype=F64)
        curves = MASKS["smallest-test"](context_of(w, theta))
        torch.testing.assert_close(curves.overlap, mask_overlap_curve(w, torch.arange(4)))
    finally:
        from hessketch.masks import _REGISTRY

        _REGISTRY.pop("smallest-test")


def test_the_random_masks_exact_spread_matches_many_draws() -> None:
    """The closed-form mean and standard deviation of a uniform k-subset's overlap against
    20,000 draws, on heavy-tailed (localized) eigenvectors."""
    dim, kmax = 200, 5
    w = orthonormal(dim, kmax, seed=3)
    w = w * torch.linspace(0.1, 3, dim, dtype=F64)[:, None] ** 3  # localize the rows
    w, _ = torch.linalg.qr(w)
    mean, spread = random_mask_moments(iter(w.split(64)), kmax, dim)
    gen = torch.Generator().manual_seed(0)
    norms = torch.cumsum(w**2, dim=1)
    draws = torch.stack(
        [norms[torch.randperm(dim, generator=gen)[:kmax]] for _ in range(20_000)]
    )  # (n, k rows, K): the k-subset's first k rows at column k - 1
    for k in range(1, kmax + 1):
        overlaps = draws[:, :k, k - 1].sum(dim=1) / k
        assert float(mean[k - 1]) == pytest.approx(k / dim, rel=1e-12)
        assert float(overlaps.mean()) == pytest.approx(float(mean[k - 1]), rel=0.03)
        assert float(overlaps.std()) == pytest.approx(float(spread[k - 1]), rel=0.03)
