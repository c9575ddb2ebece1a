"""Evidence of accuracy for computed eigenpairs: residuals, Rayleigh quotients, a verdict.

For a symmetric ``H``, a unit vector ``w`` and a number ``λ``, the residual
``r = ‖H w − λ w‖`` certifies that some eigenvalue of ``H`` lies within ``r`` of ``λ``, and that
``(λ, w)`` is an exact eigenpair of ``H + E`` with ``‖E‖₂ = r`` (a *backward error* of
``r/‖H‖₂``). Residuals need one product with each eigenvector: a *verification wave* for the
one-pass sketch, free for the Krylov method (its basis images are measured).

The verdict: pairs ``1..trusted_k`` (in the reported order, descending ``|λ|``) all have
backward error ``≤ tolerance`` and every consistency check that needs no products passed;
``trusted_k = 0`` when a check failed. ``‖H‖₂`` is estimated by ``max |wᵢᵀHwᵢ|``, a lower
bound, so backward errors are over- rather than under-estimated.

Consistency checks without products (from the sketch's Gaussian probes, Tropp et al. 2019 §6):

- ``eigenvalue_energy``: ``Σ λ̂²`` of the computed pairs cannot exceed ``‖H‖_F²``. With ``q``
  probes the plain estimate ``mean ‖Hω‖²`` falls below ``‖H‖_F² / c`` with probability at most
  ``(t e^{1−t})^{q/2}``, ``t = 1/c``; ``c`` is chosen so that this is ``≤ 10⁻³``.
- ``residual_energy``: the approximation ``Ĥ = W Λ Wᵀ`` must be closer to ``H`` than the zero
  matrix is: ``mean ‖(H − Ĥ)ω‖² < mean ‖Hω‖²`` (same probes, so the comparison is paired).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hessketch.metrics import aposteriori_tail_bounds

__all__ = [
    "DEFAULT_TOLERANCE",
    "Certificate",
    "certify",
    "probe_checks",
    "residuals_from_images",
]

# Backward error accepted for a certified pair: the pair is exact for a Hessian within 5 % of
# ‖H‖₂. See the module docstring and the benchmarks/README.md measurements behind it.
DEFAULT_TOLERANCE = 5e-2
# Probability that a correct decomposition fails the eigenvalue-energy check.
_FALSE_ALARM = 1e-3


def _energy_factor(probes: int) -> float:
    """Smallest ``c`` with ``P(probe estimate < ‖H‖_F²/c) ≤ _FALSE_ALARM`` (bisection)."""
    lo, hi = 1.0 + 1e-9, 1e6
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if aposteriori_tail_bounds(probes, mid)[0] <= _FALSE_ALARM:
            hi = mid
        else:
            lo = mid
    return hi


def probe_checks(
    eigenvalues: torch.Tensor, frobenius_sq_probes: float, residual_sq: float, probes: int
) -> dict[str, dict[str, Any]]:
    """The consistency checks that need no products (see the module docstring).

    Args:
        eigenvalues: the computed eigenvalues.
        frobenius_sq_probes: the plain probe estimate ``mean ‖Hω‖²``.
        residual_sq: the probe estimate ``mean ‖(H − Ĥ)ω‖²``.
        probes: number of probes behind both estimates.
    """
    energy = float(eigenvalues.to(torch.float64).square().sum())
    factor = _energy_factor(probes)
    return {
        "eigenvalue_energy": {
            "passed": energy <= factor * frobenius_sq_probes,
            "sum_eigenvalues_sq": energy,
            "frobenius_sq_probes": frobenius_sq_probes,
            "allowed_factor": factor,
            "probes": probes,
        },
        "residual_energy": {
            "passed": residual_sq < frobenius_sq_probes,
            "residual_sq": residual_sq,
            "frobenius_sq_probes": frobenius_sq_probes,
            "relative_error": math.sqrt(residual_sq / frobenius_sq_probes)
            if frobenius_sq_probes > 0
            else float("inf"),
        },
    }


@dataclass
class Certificate:
    """Residual evidence for eigenpairs ``(λᵢ, wᵢ)``, ``i = 1..n`` (see the module docstring).

    Attributes:
        eigenvalues: ``(n,)`` the eigenvalues as reported.
        rayleigh: ``(n,)`` Rayleigh quotients ``wᵢᵀHwᵢ / ‖wᵢ‖²``.
        residual_norms: ``(n,)`` ``‖H wᵢ − λᵢ wᵢ‖ / ‖wᵢ‖``: an eigenvalue of ``H`` lies within
            this of ``λᵢ``.
        norm_estimate: estimate (a lower bound) of ``‖H‖₂``.
        tolerance: largest accepted backward error.
        checks: the product-free consistency checks, by name (empty when there are no probes).
        hvps: products spent on the certificate (0 when it came for free).
        method: how the residuals were obtained (``"verification wave"`` or ``"Ritz"``).
    """

    eigenvalues: torch.Tensor
    rayleigh: torch.Tensor
    residual_norms: torch.Tensor
    norm_estimate: float
    tolerance: float = DEFAULT_TOLERANCE
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    hvps: int = 0
    method: str = "verification wave"

    @property
    def backward_errors(self) -> torch.Tensor:
        """``‖H wᵢ − λᵢ wᵢ‖ / ‖H‖₂`` per pair."""
        return self.residual_norms / max(self.norm_estimate, torch.finfo(torch.float64).tiny)

    @property
    def checks_passed(self) -> bool:
        """Whether every product-free check passed."""
        return all(c["passed"] for c in self.checks.values())

    @property
    def trusted_k(self) -> int:
        """Largest ``k`` such that pairs ``1..k`` are all certified (0 if a check failed)."""
        if not self.checks_passed:
            return 0
        bad = torch.nonzero(~(self.backward_errors <= self.tolerance)).flatten()
        return int(bad[0]) if len(bad) else len(self.eigenvalues)

    @property
    def verdict(self) -> str:
        """One line for logs and reports."""
        n, trusted = len(self.eigenvalues), self.trusted_k
        failed = [name for name, c in self.checks.items() if not c["passed"]]
        if failed:
            return f"UNTRUSTWORTHY: consistency check(s) {', '.join(failed)} failed"
        if trusted == n:
            return f"certified: all {n} pairs have backward error <= {self.tolerance:g}"
        worst = float(self.backward_errors.max())
        return (
            f"certified for k <= {trusted} of {n} (pair {trusted + 1} has backward error "
            f"{float(self.backward_errors[trusted]):.3g} > {self.tolerance:g}; worst {worst:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (per-pair values are in :meth:`rows`)."""
        errors = self.backward_errors
        return {
            "method": self.method,
            "pairs": len(self.eigenvalues),
            "trusted_k": self.trusted_k,
            "verdict": self.verdict,
            "tolerance": self.tolerance,
            "norm_estimate": self.norm_estimate,
            "max_backward_error": float(errors.max()) if len(errors) else 0.0,
            "median_backward_error": float(errors.median()) if len(errors) else 0.0,
            "checks": self.checks,
            "hvps": self.hvps,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One table row per pair: eigenvalue, Rayleigh quotient, residual, backward error."""
        errors = self.backward_errors
        trusted = self.trusted_k
        return [
            {
                "rank": i + 1,
                "eigenvalue": float(self.eigenvalues[i]),
                "rayleigh_quotient": float(self.rayleigh[i]),
                "residual": float(self.residual_norms[i]),
                "backward_error": float(errors[i]),
                "certified": int(i < trusted),
            }
            for i in range(len(self.eigenvalues))
        ]


def residuals_from_images(
    eigenvalues: torch.Tensor, vectors: torch.Tensor, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Partial sums over a row block: ``(‖Hw − λw‖², wᵀHw, ‖w‖²)`` per column (float64)."""
    w, hw = vectors.to(torch.float64), images.to(torch.float64)
    lam = eigenvalues.to(torch.float64)
    return (hw - w * lam).square().sum(0), (w * hw).sum(0), w.square().sum(0)


def certify(
    op: Callable[[torch.Tensor], torch.Tensor],
    eigenvalues: torch.Tensor,
    eigenvectors: torch.Tensor,
    *,
    block_size: int = 64,
    tolerance: float = DEFAULT_TOLERANCE,
    checks: dict[str, dict[str, Any]] | None = None,
) -> Certificate:
    """Certify eigenpairs with one product per eigenvector (a verification wave).

    Args:
        op: the symmetric operator, mapping ``(D, b)`` blocks to ``(D, b)`` blocks.
        eigenvalues: ``(n,)`` reported eigenvalues.
        eigenvectors: ``(D, n)`` reported eigenvectors.
        block_size: vectors per product with ``op``.
        tolerance: largest accepted backward error.
        checks: product-free consistency checks to include (see :func:`probe_checks`).
    """
    n = len(eigenvalues)
    parts = torch.zeros(3, n, dtype=torch.float64)
    for a in range(0, n, block_size):
        b = min(a + block_size, n)
        w = eigenvectors[:, a:b]
        images = op(w).cpu()
        parts[:, a:b] = torch.stack(residuals_from_images(eigenvalues[a:b], w.cpu(), images))
    return certificate_from_sums(
        eigenvalues, parts, tolerance=tolerance, checks=checks or {}, hvps=n
    )


def certificate_from_sums(
    eigenvalues: torch.Tensor,
    sums: torch.Tensor,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    checks: dict[str, dict[str, Any]] | None = None,
    hvps: int = 0,
    method: str = "verification wave",
) -> Certificate:
    """A certificate from accumulated ``(‖Hw − λw‖², wᵀHw, ‖w‖²)`` rows (``(3, n)``)."""
    residual_sq, quad, norm_sq = sums.to(torch.float64)
    norm_sq = norm_sq.clamp_min(torch.finfo(torch.float64).tiny)
    rayleigh = quad / norm_sq
    residuals = (residual_sq / norm_sq).sqrt()
    norm_estimate = float(rayleigh.abs().max()) if len(rayleigh) else 0.0
    return Certificate(
        eigenvalues=eigenvalues.to(torch.float64).cpu(),
        rayleigh=rayleigh,
        residual_norms=residuals,
        norm_estimate=norm_estimate,
        tolerance=tolerance,
        checks=checks or {},
        hvps=hvps,
        method=method,
    )
