"""Certified eigenspaces: bounds on ‖sin Θ‖ of every top-j space and intervals on mask overlaps.

A residual ``‖Hw − θw‖`` certifies an eigenvalue, not a vector: inside a cluster of close
eigenvalues a pair with a small residual can be any mixture of the cluster. The paper's
quantities live on the top-``j`` *space*, so this module bounds, for every ``j``, the distance
``‖sin Θ(Ŵ_j, W_j)‖_F`` between the span of the first ``j`` computed vectors and the true top-j
eigenspace of ``H`` (ordered by ``|λ|``), and turns it into an interval that contains the true
mask overlap.

**The bound** (Davis & Kahan 1970, residual form, Frobenius norm). Let ``R_j = HŴ_j − Ŵ_jΘ_j``
(columns ``r_i``, ``Θ_j = diag(θ_i)``, any numbers) and let every eigenvalue of ``H`` outside
the top ``j`` have ``|λ| ≤ μ``. With ``X = W_⊥ᵀŴ_j``, ``Λ_⊥X − XΘ_j = W_⊥ᵀR_j`` entrywise gives
``X_li = w_lᵀr_i / (λ_l − θ_i)``, so ``‖sin Θ‖_F ≤ ‖R_j‖_F / δ_j`` with the gap
``δ_j = min_{i≤j}|θ_i| − μ`` (``∞`` when ``δ_j ≤ 0``: ``j`` cuts through a cluster).

``μ`` is estimated from the computed pairs beyond ``j``: each ``(θ_i, ŵ_i)`` has an eigenvalue
within ``r_i`` of ``θ_i``, so ``μ̂_{j+1} = max_{i>j}(|θ_i| + r_i)``. **Assumption (A), no
eigenvalue missed**: the ``(j+1)``-th largest ``|λ|`` of ``H`` is at most ``μ̂_{j+1}``, i.e. no
eigenvalue of larger modulus was missed by every computed vector beyond ``j``. It can fail when
a large eigenvalue's eigenvector is (nearly) orthogonal to everything measured (a start block
narrower than a multiplicity, or an unlucky start); the tests check it against exact answers.
**Assumption (B), products accurate to ε**: the floating-point products act as exact products
with a symmetric ``H̃`` within ``ε‖H‖₂`` of ``H`` (float32: ``ε = 5e-7``, twice the largest error
measured on the mlp16 and mlp1m Hessians against float64 products, 2.4e-7; float64: 1e-14).
The residuals certify the space of ``H̃``; by Davis–Kahan again (Weyl for the gap) the space of
``H`` is within ``√j·εN/(δ_j − εN)`` of it, ``N = max_i(|θ_i| + r_i) ≥ ‖H‖₂`` under (A), and the
reported bound is the sum. Inside a dense spectrum this term dominates in float32: certifying
to 1e-2 there takes float64 products.

**Galerkin refinement** (Ritz vectors of one search space ``V``, e.g. a Krylov basis). Their
residuals are orthogonal to ``V`` up to a computed in-space part ``p_i = ‖P_V r_i‖``. For an
eigenvector ``w_l`` near ``θ_i`` the term ``w_lᵀr_i = (P_V^⊥ w_l)ᵀ r_i`` is small, because such
``w_l`` lie almost in ``V``: ``Σ_{l=j+1}^{L} ‖P_V^⊥ w_l‖² ≤ ‖sin Θ(W_L, Ŵ_L)‖² ≤ b_L²`` (the bound
of the larger space ``L``). Splitting the residual mass over the eigenvalue shells
``l = j+1, j+2, …`` with gaps ``g_l = min_{i≤j}|θ_i| − μ̂_l`` (nondecreasing) and maximizing
``Σ_l x_l/g_l²`` under the cumulative caps ``Σ_{l≤L} x_l ≤ min(1, b_L²)`` (a linear program whose
greedy solution fills the nearest shells up to their caps) gives

    b_j = ‖P_V R_j‖_F / δ_j + √(Σ_l x_l / g_l²) · ‖P_V^⊥ R_j‖_F,

computed from ``j = m − 1`` down to 1. With no caps (``b_L ≥ 1``) it is the plain bound. On
the mlp16 Hessian it is within 2–30× of the true error where the plain bound is 100–1000× off
(benchmarks/README.md).

**The overlap interval.** For orthonormal ``Ŵ, W`` (``k`` columns), the coordinate projector
``P`` of a mask and ``s ≥ ‖sin Θ(Ŵ, W)‖_F``: with ``Ŵ = WC + W_⊥S`` (``‖C‖₂ ≤ 1``,
``‖S‖_F = ‖sin Θ‖_F``), ``‖PŴ‖_F ≤ ‖PW‖_F + s`` and symmetrically, so
``|√(k·ov̂) − √(k·ov)| ≤ s`` (DESIGN §1.5 has √2·s); also ``|k·ov̂ − k·ov| ≤ Σ sin θ_i ≤ √k·s``.
Both intervals hold; their intersection is reported, widened for the computed vectors'
departure from orthonormality (``η = ‖ŴᵀŴ − I‖₂``) and their float32 storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "SpaceBounds",
    "chance_verdict",
    "overlap_interval",
    "space_bounds",
]

F64 = torch.float64
# Relative accuracy ε of one product (assumption B): float32 twice the largest error measured
# on the mlp16 and mlp1m Hessians (2.4e-7‖H‖₂, eigenvector inputs; random ones 1e-8).
PRODUCT_ERROR = {torch.float32: 5e-7, torch.float64: 1e-14}


@dataclass
class SpaceBounds:
    """Bounds on the top-``j`` spaces, ``j = 1..m``, of ``m`` computed pairs (reported order).

    Attributes:
        bounds: ``(m,)`` upper bound on ``‖sin Θ(Ŵ_j, W_j)‖_F``; ``inf`` where none can be
            given (no gap at ``j``, or ``j = m``: nothing is known beyond the last pair).
        gaps: ``(m,)`` ``δ_j = min_{i≤j}|θ_i| − μ̂_{j+1}``; ``≤ 0`` inside a cluster, ``nan``
            at ``j = m``.
        next_modulus: ``(m,)`` ``μ̂_{j+1}``, the assumed bound on the ``(j+1)``-th largest
            ``|λ|`` (assumption A); ``nan`` at ``j = m``.
        galerkin: whether the Galerkin refinement was used.
    """

    bounds: torch.Tensor
    gaps: torch.Tensor
    next_modulus: torch.Tensor
    galerkin: bool

    def certified_k(self, tolerance: float) -> int:
        """The largest ``j`` whose bound is ``≤ tolerance`` (0 if none)."""
        ok = torch.nonzero(self.bounds <= tolerance).flatten()
        return int(ok[-1]) + 1 if len(ok) else 0


def _suffix_max(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(torch.cummax(torch.flip(x, [0]), 0).values, [0])


def space_bounds(
    values: torch.Tensor,
    residuals: torch.Tensor,
    *,
    in_space: torch.Tensor | None = None,
    galerkin: bool = False,
    orthonormality: float = 0.0,
    product_dtype: torch.dtype = torch.float32,
    product_error: float | None = None,
) -> SpaceBounds:
    """Bounds on ``‖sin Θ‖_F`` of every leading space of computed pairs (module docstring).

    Args:
        values: ``(m,)`` the numbers ``θ_i`` the residuals are taken with (Rayleigh quotients
            or Ritz values), in the reported order (descending ``|λ|`` up to errors).
        residuals: ``(m,)`` ``‖Hŵ_i − θ_iŵ_i‖ / ‖ŵ_i‖``.
        in_space: ``(m,)`` the part of each residual inside the search space (Galerkin only;
            default 0); its squares must not exceed the residuals'.
        galerkin: the vectors are Ritz vectors of one search space, their residuals orthogonal
            to it up to ``in_space``; without it every residual is treated as arbitrary.
        orthonormality: ``η = ‖ŴᵀŴ − I‖₂`` of the computed vectors (``< 1``).
        product_dtype: dtype of the products behind the residuals.
        product_error: ``ε`` of assumption (B); default :data:`PRODUCT_ERROR` of the dtype.

    Raises:
        ValueError: on inconsistent shapes, negative residuals or ``η ≥ 1``.
    """
    theta = torch.as_tensor(values, dtype=F64).flatten()
    r = torch.as_tensor(residuals, dtype=F64).flatten()
    m = len(theta)
    if len(r) != m or m == 0:
        raise ValueError(f"values and residuals must be non-empty and alike, got {m}, {len(r)}")
    if bool((r < 0).any()) or not bool(torch.isfinite(r).all()):
        raise ValueError("residuals must be finite and non-negative")
    if not 0 <= orthonormality < 1:
        raise ValueError(f"orthonormality must be in [0, 1), got {orthonormality}")
    if in_space is None or not galerkin:
        par = r.clone() if not galerkin else torch.zeros_like(r)
    else:
        par = torch.as_tensor(in_space, dtype=F64).flatten().abs()
        if len(par) != m:
            raise ValueError(f"in_space must have {m} entries, got {len(par)}")
        par = torch.minimum(par, r)
    # Unnormalized residual columns are r_i‖ŵ_i‖ ≤ r_i√(1+η); the span's sine is ‖W_⊥ᵀŴ_j‖
    # over σ_min(Ŵ_j) ≥ √(1−η).
    scale = math.sqrt((1 + orthonormality) / (1 - orthonormality))
    moduli = theta.abs() + r
    next_modulus = torch.full((m,), float("nan"), dtype=F64)
    next_modulus[:-1] = _suffix_max(moduli)[1:]
    smallest = torch.cummin(theta.abs(), 0).values  # min_{i≤j}|θ_i|
    gaps = smallest - next_modulus
    par_f = torch.cumsum(par.square(), 0).sqrt()
    perp_f = torch.cumsum((r.square() - par.square()).clamp_min(0), 0).sqrt()
    bounds = torch.full((m,), float("inf"), dtype=F64)
    # the last computed pair bounds every eigenvalue beyond the computed ones: |λ_l| ≤ μ̂_m
    tail = moduli[-1]
    for j in range(m - 2, -1, -1):  # 0-based: the top-(j+1) space; shells l = j+1..m-1
        gap = float(gaps[j])
        if gap <= 0:
            continue
        if galerkin:
            shell_gaps = torch.cat([smallest[j] - next_modulus[j:-1], (smallest[j] - tail)[None]])
            caps = torch.cat([bounds[j + 1 :].square().clamp(max=1.0), torch.ones(1, dtype=F64)])
            filled = torch.flip(torch.cummin(torch.flip(caps, [0]), 0).values, [0])
            mass = torch.diff(filled, prepend=torch.zeros(1, dtype=F64))
            used = mass > 0
            if bool((shell_gaps[used] <= 0).any()):
                continue
            weight = float((mass[used] / shell_gaps[used].square()).sum())
            bound = float(par_f[j]) / gap + math.sqrt(weight) * float(perp_f[j])
        else:
            bound = float(par_f[j]) / gap
        bounds[j] = bound * scale
    # from the space of H̃ to that of H (assumption B); the caps above are H̃'s bounds
    eps = PRODUCT_ERROR[product_dtype] if product_error is None else product_error
    norm = float(moduli.max())
    shifted = gaps - eps * norm
    j = torch.arange(1, m + 1, dtype=F64)
    drift = torch.where(shifted > 0, j.sqrt() * eps * norm / shifted, torch.inf)
    bounds = torch.where(torch.isfinite(bounds), bounds + drift, bounds)
    return SpaceBounds(bounds, gaps, next_modulus, galerkin)


def overlap_interval(
    overlap: torch.Tensor,
    space_bound: torch.Tensor,
    *,
    orthonormality: float = 0.0,
    rounding: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An interval that contains the true mask overlap at every ``k`` (module docstring).

    Args:
        overlap: ``(K,)`` computed overlaps ``‖PŴ_k‖_F²/k``, ``k = 1..K``.
        space_bound: ``(K,)`` bounds on ``‖sin Θ(Ŵ_k, W_k)‖_F`` (``inf``: none; 0: exact).
        orthonormality: ``η = ‖ŴᵀŴ − I‖₂`` of the vectors the bound is for.
        rounding: relative rounding of the stored vectors the overlap was computed from against
            the vectors the bound is for (``2⁻²⁴`` for float32 copies of float64 vectors).

    Returns:
        ``(low, high)``, each ``(K,)``, within ``[0, 1]``.
    """
    ov = torch.as_tensor(overlap, dtype=F64).flatten().clamp(0, 1)
    s = torch.as_tensor(space_bound, dtype=F64).flatten()
    k = torch.arange(1, len(ov) + 1, dtype=F64)
    a = (k * ov).sqrt()
    slack = rounding * (k * (1 + orthonormality)).sqrt()
    a_low = (a - slack).clamp_min(0) / math.sqrt(1 + orthonormality)
    a_high = (a + slack) / math.sqrt(1 - orthonormality)
    finite = torch.isfinite(s)
    s0 = torch.where(finite, s, torch.zeros_like(s))
    # |√(k ov) − √(k ov̂)| ≤ s
    low1 = (a_low - s0).clamp_min(0).square()
    high1 = torch.minimum(a_high + s0, k.sqrt()).square()
    # |k ov − k ov̂| ≤ √k s
    low2 = a_low.square() - k.sqrt() * s0
    high2 = a_high.square() + k.sqrt() * s0
    # the computed value lies inside by construction; min/max only undo the rounding of √·²
    low = torch.minimum((torch.maximum(low1, low2) / k).clamp(0, 1), ov)
    high = torch.maximum((torch.minimum(high1, high2) / k).clamp(0, 1), ov)
    low = torch.where(finite, low, torch.zeros_like(low))
    high = torch.where(finite, high, torch.ones_like(high))
    return low, high


def chance_verdict(low: float, high: float, chance: float) -> str:
    """``"above"``/``"below"`` chance if the interval excludes it, else ``"undetermined"``."""
    if low > chance:
        return "above"
    if high < chance:
        return "below"
    return "undetermined"
