"""The whole spectrum: stochastic Lanczos quadrature (SLQ) density and Hutch++ trace.

SLQ (Golub & Meurant; Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019): for a random
unit vector ``v``, ``m`` Lanczos steps give a tridiagonal ``T`` whose eigenvalues ``θⱼ`` and
squared first eigenvector components ``τⱼ`` are the Gauss quadrature of the spectral measure
``μ_v = Σᵢ (uᵢᵀv)² δ(λᵢ)``; the mean over probes estimates the spectral density
``μ = 1/D Σᵢ δ(λᵢ)``. All probes run as one block (one product call of ``p`` vectors per
step), each with its own three-term recurrence and full reorthogonalization against its own
basis in float64 (memory ``8·D·p·m`` bytes), so ``m`` steps cost ``p·m`` products.

Hutch++ (Meyer, Musco, Musco & Woodruff 2021): a third of the products find a range ``Q`` of
the matrix, the trace on it is exact, and Hutchinson's estimator on the complement gives the
rest; the spread of its terms gives a standard error.

Neither reuses the sketch's measurements: SLQ needs Lanczos vectors from random probes one
step at a time, and the sketch's test matrices (SSRFT) are not Rademacher probes of the
complement. See benchmarks/README.md for their cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SpectralDensity", "TraceEstimate", "hutchpp_trace", "slq_density", "wasserstein_1"]

MatMat = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SpectralDensity:
    """Gauss quadrature nodes and weights of each probe: ``(p, m)`` each, weights summing to 1.

    The estimated spectral measure is the mean over probes of ``Σⱼ τⱼ δ(θⱼ)``.
    """

    nodes: Tensor
    weights: Tensor
    dim: int

    @property
    def probes(self) -> int:
        """How many probes."""
        return self.nodes.shape[0]

    def measure(self) -> tuple[Tensor, Tensor]:
        """The estimated measure as sorted atoms and their weights (summing to 1)."""
        atoms = self.nodes.reshape(-1)
        mass = (self.weights / self.probes).reshape(-1)
        order = torch.argsort(atoms)
        return atoms[order], mass[order]

    def smoothed(self, grid: Tensor, sigma: float) -> Tensor:
        """The density on ``grid`` with a Gaussian kernel of width ``sigma`` (integrates to 1)."""
        atoms, mass = self.measure()
        z = (grid[:, None].to(atoms) - atoms[None, :]) / sigma
        return (mass[None, :] * torch.exp(-0.5 * z**2)).sum(dim=1) / (
            sigma * math.sqrt(2 * math.pi)
        )

    def trace(self) -> float:
        """``D`` times the measure's mean: an SLQ estimate of the trace."""
        atoms, mass = self.measure()
        return float(self.dim * (atoms * mass).sum())


def slq_density(
    matmat: MatMat,
    dim: int,
    *,
    probes: int = 10,
    steps: int = 80,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> SpectralDensity:
    """SLQ nodes and weights of a symmetric operator from ``probes`` Rademacher probes.

    Args:
        matmat: ``V ↦ A V`` for ``V`` of shape ``(dim, b)``.
        dim: ``D``.
        probes: independent probes (their spread is the estimate's variance).
        steps: Lanczos steps per probe (at most ``dim``); ``2·steps − 1`` moments are exact.
        seed: the probes' seed.
        dtype: dtype in which products are requested (the recurrence is float64).

    Raises:
        ValueError: for probes or steps below 1, or steps above ``dim``.
    """
    if probes < 1 or not 1 <= steps <= dim:
        raise ValueError(f"need probes >= 1 and 1 <= steps <= D={dim}; got {probes}, {steps}")
    gen = torch.Generator().manual_seed(seed)
    v = (torch.randint(0, 2, (dim, probes), generator=gen) * 2 - 1).to(torch.float64)
    v /= math.sqrt(dim)
    basis = torch.zeros(steps, dim, probes, dtype=torch.float64)
    alphas = torch.zeros(probes, steps, dtype=torch.float64)
    betas = torch.zeros(probes, steps, dtype=torch.float64)
    alive = torch.ones(probes, dtype=torch.bool)
    used = torch.full((probes,), steps, dtype=torch.int64)
    for j in range(steps):
        basis[j] = v
        w = matmat(v.to(dtype)).to(torch.float64)
        alphas[:, j] = (w * v).sum(dim=0)
        # full reorthogonalization (twice) against each probe's own basis
        for _ in range(2):
            coefficients = torch.einsum("jdp,dp->jp", basis[: j + 1], w)
            w -= torch.einsum("jdp,jp->dp", basis[: j + 1], coefficients)
        beta = w.norm(dim=0)
        betas[:, j] = beta
        # an invariant subspace found: that probe's quadrature is exact with j + 1 nodes
        ended = alive & (beta <= 1e-12 * alphas[:, : j + 1].abs().amax(dim=1).clamp_min(1e-300))
        used[ended] = j + 1
        alive &= ~ended
        if not alive.any():
            break
        v = torch.where(alive[None, :], w / beta.clamp_min(1e-300)[None, :], 0.0)
    m = int(used.max())
    nodes = torch.zeros(probes, m, dtype=torch.float64)
    weights = torch.zeros(probes, m, dtype=torch.float64)
    for p in range(probes):
        n = int(used[p])
        t = torch.diag(alphas[p, :n])
        if n > 1:
            off = betas[p, : n - 1]
            t += torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        nodes[p, :n], weights[p, :n] = theta, s[0] ** 2
        nodes[p, n:] = theta[-1]  # padding with zero weight
    return SpectralDensity(nodes, weights, dim)


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate, its standard error and the products it took."""

    value: float
    standard_error: float
    products: int


def hutchpp_trace(
    matmat: MatMat,
    dim: int,
    *,
    products: int = 90,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TraceEstimate:
    """Hutch++: ``tr(QᵀAQ)`` exactly on a sketched range ``Q`` plus Hutchinson on the rest.

    ``products`` is split in three: ``S`` (``m/3`` products) gives ``Q = orth(AS)``; ``QᵀAQ``
    costs ``m/3``; ``m/3`` Rademacher probes ``G`` give ``tr((I − QQᵀ)A(I − QQᵀ))`` as the mean of
    ``gᵢᵀ(I − QQᵀ)A(I − QQᵀ)gᵢ``, whose sample standard deviation over ``√(m/3)`` is the
    standard error (the range part has none).

    Raises:
        ValueError: for fewer than 6 products.
    """
    if products < 6:
        raise ValueError(f"Hutch++ needs at least 6 products, got {products}")
    third = products // 3
    gen = torch.Generator().manual_seed(seed)

    def rademacher(n: int) -> Tensor:
        return (torch.randint(0, 2, (dim, n), generator=gen) * 2 - 1).to(torch.float64)

    def apply(x: Tensor) -> Tensor:
        return matmat(x.to(dtype)).to(torch.float64)

    q, _ = torch.linalg.qr(apply(rademacher(third)))
    range_part = float(torch.trace(q.T @ apply(q)))
    g = rademacher(products - 2 * third)
    g -= q @ (q.T @ g)
    terms = (g * apply(g)).sum(dim=0)
    rest = float(terms.mean())
    spread = float(terms.std()) / math.sqrt(terms.numel()) if terms.numel() > 1 else math.inf
    return TraceEstimate(range_part + rest, spread, products)


def wasserstein_1(atoms_a: Tensor, mass_a: Tensor, atoms_b: Tensor, mass_b: Tensor) -> float:
    """Wasserstein-1 distance of two discrete measures on the line: ``∫|F_a − F_b| dx``."""
    atoms = torch.cat([atoms_a, atoms_b]).to(torch.float64)
    signed = torch.cat([mass_a, -mass_b]).to(torch.float64)
    order = torch.argsort(atoms)
    atoms, cdf_gap = atoms[order], torch.cumsum(signed[order], dim=0)
    return float((cdf_gap[:-1].abs() * torch.diff(atoms)).sum())
