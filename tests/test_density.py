"""SLQ spectral density and Hutch++ trace against matrices with known spectra.

Tolerances: the SLQ measure's Wasserstein-1 distance to the exact eigenvalue measure
``1/D Σ δ(λᵢ)`` is written relative to the spectral width ``λ_max − λ_min``; with 10 probes the
probes' sampling error (≈ width/√(p·D)·const) dominates the quadrature error at 60 steps.
"""

from __future__ import annotations

import math

import pytest
import torch

from hessketch.density import hutchpp_trace, slq_density, wasserstein_1

F64 = torch.float64
D = 600


def known(kind: str) -> torch.Tensor:
    i = torch.arange(D, dtype=F64)
    if kind == "bulk+outliers":  # a Hessian-like shape: a bulk near 0, a few large outliers
        gen = torch.Generator().manual_seed(5)
        values = 0.01 * torch.randn(D, generator=gen, dtype=F64)
        values[:10] = torch.linspace(1, 5, 10, dtype=F64)
        values[10:13] = -torch.tensor([0.3, 0.2, 0.1], dtype=F64)
        return values
    if kind == "uniform":
        return torch.linspace(-1, 2, D, dtype=F64)
    if kind == "decaying":
        return 0.97**i * torch.where(i % 3 == 0, -1.0, 1.0)
    raise ValueError(kind)


def operator(values: torch.Tensor, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=F64))
    a = (q * values) @ q.T
    counter = {"products": 0}

    def matmat(v: torch.Tensor) -> torch.Tensor:
        counter["products"] += v.shape[1]
        return (a @ v.to(F64)).to(v.dtype)

    return matmat, counter


@pytest.mark.parametrize("kind", ["bulk+outliers", "uniform", "decaying"])
def test_slq_measure_is_near_the_exact_spectrum(kind: str) -> None:
    values = known(kind)
    matmat, counter = operator(values)
    density = slq_density(matmat, D, probes=10, steps=60, seed=1, dtype=F64)
    assert counter["products"] <= 10 * 60
    atoms, mass = density.measure()
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-12)
    width = float(values.max() - values.min())
    exact = torch.full((D,), 1.0 / D, dtype=F64)
    distance = wasserstein_1(atoms, mass, torch.sort(values).values, exact)
    assert distance <= 0.02 * width, distance
    # the extreme nodes converge to the extreme eigenvalues (Lanczos finds outliers first)
    assert float(atoms.max()) == pytest.approx(float(values.max()), rel=1e-6)
    assert float(atoms.min()) == pytest.approx(float(values.min()), rel=1e-4, abs=1e-6)
    # its mean is an unbiased trace estimate: within 4 standard errors of Hutchinson's
    assert abs(density.trace() - float(values.sum())) <= 4 * math.sqrt(2 * D) * float(
        values.pow(2).mean().sqrt()
    )


def test_slq_stops_on_an_invariant_subspace() -> None:
    """Five distinct eigenvalues: Lanczos ends after five steps with the exact measure."""
    values = torch.repeat_interleave(torch.tensor([-1.0, 0.5, 1.0, 2.0, 3.0], dtype=F64), D // 5)
    matmat, _ = operator(values)
    density = slq_density(matmat, D, probes=4, steps=30, seed=0, dtype=F64)
    assert density.nodes.shape == (4, 5)
    for p in range(4):
        torch.testing.assert_close(density.nodes[p], values.unique(), rtol=0, atol=1e-10)


def test_smoothed_density_integrates_to_one() -> None:
    matmat, _ = operator(known("uniform"))
    density = slq_density(matmat, D, probes=3, steps=20, dtype=F64)
    grid = torch.linspace(-2, 3, 5001, dtype=F64)
    mass = torch.trapezoid(density.smoothed(grid, sigma=0.05), grid)
    assert float(mass) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["bulk+outliers", "decaying"])
def test_hutchpp_is_exact_on_the_range_and_its_error_bar_holds(kind: str) -> None:
    values = known(kind)
    matmat, counter = operator(values)
    estimate = hutchpp_trace(matmat, D, products=90, seed=2, dtype=F64)
    assert counter["products"] == 90 == estimate.products
    assert abs(estimate.value - float(values.sum())) <= 4 * estimate.standard_error
    # Hutch++ deflates the outliers: far below plain Hutchinson's error √(2‖A‖_F²/m)
    hutchinson = math.sqrt(2 * float(values.pow(2).sum()) / 90)
    assert estimate.standard_error < hutchinson


def test_bad_arguments() -> None:
    matmat, _ = operator(known("uniform"))
    with pytest.raises(ValueError, match="steps"):
        slq_density(matmat, D, steps=D + 1)
    with pytest.raises(ValueError, match="at least 6"):
        hutchpp_trace(matmat, D, products=5)


def test_wasserstein_of_shifted_measures_is_the_shift() -> None:
    atoms = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    mass = torch.full((3,), 1 / 3, dtype=F64)
    assert wasserstein_1(atoms, mass, atoms + 0.25, mass) == pytest.approx(0.25)
