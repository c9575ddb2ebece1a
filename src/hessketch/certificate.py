"""Evidence of accuracy for computed eigenpairs: residuals, space bounds, a verdict.

For a symmetric ``H``, a unit vector ``w`` and a number ``λ``, the residual
``r = ‖H w − λ w‖`` certifies that some eigenvalue of ``H`` lies within ``r`` of ``λ``, and that
``(λ, w)`` is an exact eigenpair of ``H + E`` with ``‖E‖₂ = r`` (a *backward error* of
``r/‖H‖₂``). Residuals need one product with each eigenvector: a *verification wave* for the
one-pass sketch, free for the Krylov method (its basis images are measured).

The verdict: pairs ``1..trusted_k`` (in the reported order, descending ``|λ|``) all have
backward error ``≤ tolerance`` and every consistency check that needs no products passed;
``trusted_k = 0`` when a check failed. ``‖H‖₂`` is estimated by ``max |wᵢᵀHwᵢ|``, a lower
bound, so backward errors are over- rather than under-estimated.

Pairs are not spaces: inside a cluster of close eigenvalues a small residual says nothing
about the vector. The certificate therefore also bounds, for every ``j``, the distance
``‖sin Θ‖_F`` between the span of the first ``j`` vectors and the true top-``j`` eigenspace
(:mod:`hessketch.spacebound`: Davis–Kahan from the residuals and the gap to the pairs beyond
``j``, assuming no eigenvalue was missed); ``space_k`` is the largest ``j`` whose bound is within
``space_tolerance`` (0 when a product-free check failed). The mask overlap of every certified
space comes with an interval (:func:`hessketch.spacebound.overlap_interval`).

The consistency checks without products are those of :mod:`hessketch.probes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hessketch.probes import _energy_factor, probe_checks  # noqa: F401 (re-exported)
from hessketch.ritz import RitzResult
from hessketch.spacebound import PRODUCT_ERROR, space_bounds

__all__ = [
    "DEFAULT_SPACE_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "Certificate",
    "certify",
    "probe_checks",
    "residuals_from_images",
    "ritz_certificate",
]

# Backward error accepted for a certified pair: the pair is exact for a Hessian within 5 % of
# ‖H‖₂. See the module docstring and the benchmarks/README.md measurements behind it.
DEFAULT_TOLERANCE = 5e-2
# Largest bound on ‖sin Θ‖_F of a certified top-j space: the true mask overlap then lies within
# ±0.1 of the computed one in units of √(j·overlap) (spacebound.overlap_interval).
DEFAULT_SPACE_TOLERANCE = 0.1
# float32 eigenvectors as stored: relative rounding against the float64 vectors certified
FLOAT32_ROUNDING = 2.0**-24


@dataclass
class Certificate:
    """Residual evidence for eigenpairs ``(λᵢ, wᵢ)``, ``i = 1..n`` (see the module docstring).

    Attributes:
        eigenvalues: ``(n,)`` the eigenvalues as reported.
        rayleigh: ``(n,)`` Rayleigh quotients ``wᵢᵀHwᵢ / ‖wᵢ‖²``.
        residual_norms: ``(n,)`` ``‖H wᵢ − λᵢ wᵢ‖ / ‖wᵢ‖``: an eigenvalue of ``H`` lies within
            this of ``λᵢ``.
        norm_estimate: estimate (a lower bound) of ``‖H‖₂``.
        space_bounds: ``(n,)`` upper bound on ``‖sin Θ‖_F`` between the span of the first ``j``
            vectors and the true top-``j`` eigenspace, ``j = 1..n`` (``inf``: none).
        space_gaps: ``(n,)`` the gap ``δ_j`` behind each bound (``≤ 0``: ``j`` cuts a cluster).
        space_next: ``(n,)`` ``μ̂_{j+1}``, the bound on the ``(j+1)``-th largest ``|λ|`` that the
            space bound assumes (no eigenvalue missed).
        tolerance: largest accepted backward error.
        space_tolerance: largest bound of a certified space.
        orthonormality: ``‖ŴᵀŴ − I‖₂`` of the vectors the bounds are for.
        rounding: relative rounding of the vectors as stored against those (``2⁻²⁴`` when
            float64 vectors are stored in float32; 0 when the stored vectors were measured).
        product_error: ``ε`` of the products' accuracy assumed by the bounds.
        checks: the product-free consistency checks, by name (empty when there are no probes).
        hvps: products spent on the certificate (0 when it came for free).
        method: how the residuals were obtained (``"verification wave"`` or ``"Ritz"``).
    """

    eigenvalues: torch.Tensor
    rayleigh: torch.Tensor
    residual_norms: torch.Tensor
    norm_estimate: float
    space_bounds: torch.Tensor
    space_gaps: torch.Tensor
    space_next: torch.Tensor
    tolerance: float = DEFAULT_TOLERANCE
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE
    orthonormality: float = 0.0
    rounding: float = 0.0
    product_error: float = PRODUCT_ERROR[torch.float32]
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
    def space_certified(self) -> torch.Tensor:
        """``(n,)`` whether the top-``j`` space is certified (bound within tolerance)."""
        ok = self.space_bounds <= self.space_tolerance
        return ok if self.checks_passed else torch.zeros_like(ok)

    @property
    def space_k(self) -> int:
        """Largest ``j`` whose space bound is within ``space_tolerance`` (0 if a check failed)."""
        ok = torch.nonzero(self.space_certified).flatten()
        return int(ok[-1]) + 1 if len(ok) else 0

    def certified_ranges(self) -> list[list[int]]:
        """The ``j`` whose top-``j`` space is certified, as ``[first, last]`` ranges."""
        ranges: list[list[int]] = []
        for j in (torch.nonzero(self.space_certified).flatten() + 1).tolist():
            if ranges and ranges[-1][1] == j - 1:
                ranges[-1][1] = j
            else:
                ranges.append([j, j])
        return ranges

    @property
    def verdict(self) -> str:
        """One line for logs and reports: the pairs and the spaces."""
        n, trusted = len(self.eigenvalues), self.trusted_k
        failed = [name for name, c in self.checks.items() if not c["passed"]]
        if failed:
            return f"UNTRUSTWORTHY: consistency check(s) {', '.join(failed)} failed"
        if trusted == n:
            pairs = f"all {n} pairs have backward error <= {self.tolerance:g}"
        else:
            worst = float(self.backward_errors.max())
            pairs = (
                f"pairs certified for k <= {trusted} of {n} (pair {trusted + 1} has backward "
                f"error {float(self.backward_errors[trusted]):.3g} > {self.tolerance:g}; worst "
                f"{worst:.3g})"
            )
        space_k = self.space_k
        if space_k == 0:
            spaces = f"no top-j space is certified to ||sin Θ||_F <= {self.space_tolerance:g}"
        else:
            spaces = (
                f"top-j spaces certified to ||sin Θ||_F <= {self.space_tolerance:g} up to "
                f"j = {space_k} of {n}"
            )
        return f"{pairs}; {spaces}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (per-pair values are in :meth:`rows`); ``space_bounds`` whole."""
        errors = self.backward_errors
        return {
            "method": self.method,
            "pairs": len(self.eigenvalues),
            "trusted_k": self.trusted_k,
            "space_k": self.space_k,
            "verdict": self.verdict,
            "tolerance": self.tolerance,
            "space_tolerance": self.space_tolerance,
            "norm_estimate": self.norm_estimate,
            "max_backward_error": float(errors.max()) if len(errors) else 0.0,
            "median_backward_error": float(errors.median()) if len(errors) else 0.0,
            "space_bounds": [_json_float(b) for b in self.space_bounds.tolist()],
            "certified_ranges": self.certified_ranges(),
            "gaps_at": [j + 1 for j in torch.nonzero(self.space_gaps > 0).flatten().tolist()],
            "orthonormality": self.orthonormality,
            "rounding": self.rounding,
            "product_error": self.product_error,
            "assumes": (
                "no eigenvalue missed: the (j+1)-th largest |λ| of H is within the residual of "
                "a computed value beyond j; products accurate to product_error·‖H‖₂"
            ),
            "checks": self.checks,
            "hvps": self.hvps,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One table row per pair: residual evidence and the bound on the top-``j`` space."""
        errors = self.backward_errors
        trusted = self.trusted_k
        space = self.space_certified
        return [
            {
                "rank": i + 1,
                "eigenvalue": float(self.eigenvalues[i]),
                "rayleigh_quotient": float(self.rayleigh[i]),
                "residual": float(self.residual_norms[i]),
                "backward_error": float(errors[i]),
                "certified": int(i < trusted),
                "space_bound": float(self.space_bounds[i]),
                "gap": float(self.space_gaps[i]),
                "next_modulus": float(self.space_next[i]),
                "space_certified": int(space[i]),
            }
            for i in range(len(self.eigenvalues))
        ]


def _json_float(value: float) -> float | str:
    """JSON has no infinity: ``"inf"`` (read back by :func:`float`)."""
    return value if math.isfinite(value) else str(value)


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
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    checks: dict[str, dict[str, Any]] | None = None,
    product_dtype: torch.dtype | None = None,
    product_error: float | None = None,
) -> Certificate:
    """Certify eigenpairs with one product per eigenvector (a verification wave).

    Args:
        op: the symmetric operator, mapping ``(D, b)`` blocks to ``(D, b)`` blocks.
        eigenvalues: ``(n,)`` reported eigenvalues.
        eigenvectors: ``(D, n)`` reported eigenvectors.
        block_size: vectors per product with ``op``.
        tolerance: largest accepted backward error.
        space_tolerance: largest bound on ``‖sin Θ‖_F`` of a certified top-``j`` space.
        checks: product-free consistency checks to include (see :func:`probe_checks`).
        product_dtype: dtype of the products (default: the eigenvectors').
        product_error: ``ε`` of the products' accuracy (default by dtype).
    """
    n = len(eigenvalues)
    parts = torch.zeros(3, n, dtype=torch.float64)
    for a in range(0, n, block_size):
        b = min(a + block_size, n)
        w = eigenvectors[:, a:b]
        images = op(w).cpu()
        parts[:, a:b] = torch.stack(residuals_from_images(eigenvalues[a:b], w.cpu(), images))
    gram = eigenvectors.cpu().to(torch.float64).T @ eigenvectors.cpu().to(torch.float64)
    return certificate_from_sums(
        eigenvalues,
        parts,
        tolerance=tolerance,
        space_tolerance=space_tolerance,
        checks=checks or {},
        hvps=n,
        orthonormality=orthonormality_defect(gram),
        product_dtype=product_dtype or eigenvectors.dtype,
        product_error=product_error,
    )


def orthonormality_defect(gram: torch.Tensor) -> float:
    """``‖G − I‖₂`` of a Gram matrix ``G = WᵀW`` (float64)."""
    eye = torch.eye(len(gram), dtype=torch.float64)
    return float(torch.linalg.matrix_norm(gram.to(torch.float64) - eye, 2)) if len(gram) else 0.0


def certificate_from_sums(
    eigenvalues: torch.Tensor,
    sums: torch.Tensor,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    checks: dict[str, dict[str, Any]] | None = None,
    hvps: int = 0,
    method: str = "verification wave",
    orthonormality: float = 0.0,
    product_dtype: torch.dtype = torch.float32,
    product_error: float | None = None,
) -> Certificate:
    """A certificate from accumulated ``(‖Hw − λw‖², wᵀHw, ‖w‖²)`` rows (``(3, n)``).

    The space bounds use the Rayleigh quotients ``ρ`` and the residuals ``‖Hw − ρw‖`` (the
    smallest for each vector) and treat the residuals as arbitrary (no Galerkin structure: the
    vectors need not be Ritz vectors of anything); ``orthonormality`` is ``‖WᵀW − I‖₂``.
    """
    residual_sq, quad, norm_sq = sums.to(torch.float64)
    norm_sq = norm_sq.clamp_min(torch.finfo(torch.float64).tiny)
    rayleigh = quad / norm_sq
    residuals = (residual_sq / norm_sq).sqrt()
    values = eigenvalues.to(torch.float64).cpu()
    # ‖Hw − ρw‖² = ‖Hw − λw‖² − (ρ − λ)²‖w‖² (Hw − ρw ⊥ w), plus its round-off
    unit = torch.finfo(torch.float64).eps
    rayleigh_sq = (residuals.square() - (rayleigh - values).square()).clamp_min(0)
    rayleigh_residuals = (rayleigh_sq + 8 * unit * residuals.square()).sqrt()
    eps = PRODUCT_ERROR[product_dtype] if product_error is None else product_error
    bounds = space_bounds(
        rayleigh,
        torch.minimum(rayleigh_residuals, residuals),
        orthonormality=orthonormality,
        product_error=eps,
    )
    norm_estimate = float(rayleigh.abs().max()) if len(rayleigh) else 0.0
    return Certificate(
        eigenvalues=values,
        rayleigh=rayleigh,
        residual_norms=residuals,
        norm_estimate=norm_estimate,
        space_bounds=bounds.bounds,
        space_gaps=bounds.gaps,
        space_next=bounds.next_modulus,
        tolerance=tolerance,
        space_tolerance=space_tolerance,
        orthonormality=orthonormality,
        product_error=eps,
        checks=checks or {},
        hvps=hvps,
        method=method,
    )


def ritz_certificate(
    ritz: RitzResult,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    product_dtype: torch.dtype = torch.float32,
    product_error: float | None = None,
    rounding: float = 0.0,
) -> Certificate:
    """The certificate of Ritz pairs: residuals from the measured basis images, no products.

    The space bounds use every Ritz pair of the basis (those beyond the ``k`` kept bound the
    gap) and the Galerkin structure of their residuals (:func:`hessketch.spacebound.space_bounds`).

    Args:
        ritz: Rayleigh–Ritz of the basis.
        tolerance: largest accepted backward error.
        space_tolerance: largest bound of a certified space.
        product_dtype: dtype of the products (the basis images).
        product_error: ``ε`` of the products' accuracy (default by dtype).
        rounding: relative rounding of the vectors as reported (``2⁻²⁴`` if stored in float32).
    """
    k = len(ritz.eigenvalues)
    norms = ritz.vector_norms.clamp_min(torch.finfo(torch.float64).tiny)
    sums = torch.stack(
        [(ritz.residual_norms / norms).square(), ritz.eigenvalues, torch.ones_like(norms)]
    )
    eps = PRODUCT_ERROR[product_dtype] if product_error is None else product_error
    bounds = space_bounds(
        ritz.all_values,
        ritz.all_residuals,
        in_space=ritz.in_space,
        galerkin=True,
        orthonormality=ritz.orthonormality,
        product_error=eps,
    )
    certificate = certificate_from_sums(
        ritz.eigenvalues,
        sums,
        tolerance=tolerance,
        space_tolerance=space_tolerance,
        method="Ritz",
        product_error=eps,
    )
    certificate.space_bounds = bounds.bounds[:k]
    certificate.space_gaps = bounds.gaps[:k]
    certificate.space_next = bounds.next_modulus[:k]
    certificate.orthonormality = ritz.orthonormality
    certificate.rounding = rounding
    return certificate
