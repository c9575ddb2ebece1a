"""Consistency checks of a decomposition that need no products: the sketch's Gaussian probes.

Consistency checks without products (from the sketch's Gaussian probes, Tropp et al. 2019 §6):

- ``eigenvalue_energy``: ``Σ λ̂²`` of the computed pairs cannot exceed ``‖H‖_F²``. With ``q``
  probes the plain estimate ``mean ‖Hω‖²`` falls below ``‖H‖_F² / c`` with probability at most
  ``(t e^{1−t})^{q/2}``, ``t = 1/c``; ``c`` is chosen so that this is ``≤ 10⁻³``.
- ``residual_energy``: the approximation ``Ĥ = W Λ Wᵀ`` must be closer to ``H`` than the zero
  matrix is: ``mean ‖(H − Ĥ)ω‖² < mean ‖Hω‖²`` (same probes, so the comparison is paired).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hessketch.metrics import aposteriori_tail_bounds

__all__ = ["probe_checks"]

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
