"""Overlap and distance metrics between Hessian eigenspaces and parameter-magnitude masks.

A top-k magnitude mask is identified with the coordinate subspace span{e_i : i in mask}; its
overlap with a k-dimensional eigenspace span(W) is ||W[mask]||_F^2 / k, which is 1 for equal
subspaces and k/D in expectation for a uniformly random mask. All results are float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _shaped(x: Tensor, ndim: int, name: str, *, nonempty: bool = False) -> Tensor:
    got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
    if not isinstance(x, Tensor) or x.ndim != ndim or (nonempty and x.numel() == 0):
        what = "non-empty " if nonempty else ""
        raise ValueError(f"{name}: expected a {what}{ndim}-D tensor, got {got}")
    return x


def _matrix(x: Tensor, name: str) -> Tensor:
    return _shaped(x, 2, name).to(torch.float64)


def _indices(x: Tensor, name: str) -> Tensor:
    x = _shaped(x, 1, name)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer index tensor, got dtype {x.dtype}")
    return x.to(torch.long)


def _index_set(idx: Tensor, dim: int, name: str) -> Tensor:
    idx = _indices(idx, name)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= dim):
        lo, hi = int(idx.min()), int(idx.max())
        raise ValueError(f"{name}: expected indices in [0, {dim}), got range [{lo}, {hi}]")
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError(f"{name}: expected distinct indices, got duplicates")
    return idx


def magnitude_order(theta: Tensor) -> Tensor:
    """Order the flattened parameters by descending magnitude.

    Args:
        theta: Parameter tensor of any shape; it is flattened.

    Returns:
        Long tensor of flat indices sorted by descending |θ|, ties broken by lower index. The
        top-k magnitude mask is ``order[:k]``.

    Raises:
        ValueError: If ``theta`` is not a tensor or holds NaN.
    """
    if not isinstance(theta, Tensor):
        raise ValueError(f"theta: expected a tensor, got {type(theta).__name__}")
    mag = theta.detach().reshape(-1).to(torch.float64).abs()
    if torch.isnan(mag).any():
        raise ValueError("theta: expected no NaN entries, got NaN")
    # Stable sort keeps equal magnitudes in index order, so masks are reproducible.
    return torch.sort(mag, descending=True, stable=True).indices


def mask_overlap_curve(eigvecs: Tensor, order: Tensor, kmax: int | None = None) -> Tensor:
    """Overlap of the top-k magnitude mask with the top-k eigenspace, for k = 1..K.

    overlap(k) = ||W[order[:k], :k]||_F^2 / k. With A = W[order[:K], :K]**2 the numerator is
    the k×k leading block sum of A; going from k-1 to k adds row k-1 over columns <= k-1 and
    column k-1 over rows < k-1 (the corner A[k-1, k-1] counted once, with the row), so the
    whole curve costs O(K^2) rather than O(K^3).

    Args:
        eigvecs: (D, K') matrix W with orthonormal columns, most important first.
        order: 1-D magnitude order (see :func:`magnitude_order`); at least K distinct
            indices in [0, D) are needed.
        kmax: Curve length K; defaults to ``eigvecs.shape[1]``.

    Returns:
        Float64 tensor of shape (K,).

    Raises:
        ValueError: On wrong shapes, a K out of range, or bad indices in ``order[:K]``.
    """
    w = _matrix(eigvecs, "eigvecs")
    d, kcols = w.shape
    k_total = kcols if kmax is None else kmax
    if isinstance(k_total, bool) or not isinstance(k_total, int) or not 1 <= k_total <= kcols:
        raise ValueError(f"kmax: expected an int in [1, {kcols}], got {kmax!r}")
    order = _shaped(order, 1, "order")
    if order.numel() < k_total:
        raise ValueError(f"order: expected at least {k_total} indices, got {order.numel()}")
    rows = _index_set(order[:k_total], d, "order[:K]")
    a = w[rows, :k_total] ** 2
    # Row k-1 over columns 0..k-1 (lower triangle incl. diagonal) plus column k-1 over
    # rows 0..k-2 (strict upper triangle): together exactly the new L-shaped border.
    border = torch.tril(a).sum(dim=1) + torch.triu(a, diagonal=1).sum(dim=0)
    k = torch.arange(1, k_total + 1, dtype=torch.float64)
    return torch.cumsum(border, dim=0) / k


def chance_overlap(k: int | Tensor, dim: int) -> float | Tensor:
    """Expected overlap of a uniformly random k-mask with any fixed k-dim subspace.

    Each coordinate is in the mask with probability k/dim and the squared row norms of an
    orthonormal (dim, k) basis sum to k, so E[overlap] = (k/dim · k) / k = k/dim.

    Args:
        k: Mask size(s), each in [0, dim].
        dim: Ambient dimension D (> 0).

    Returns:
        k/dim, as a float for an int ``k`` or a float64 tensor for a tensor ``k``.

    Raises:
        ValueError: If ``dim`` is not a positive int or some k lies outside [0, dim].
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"dim: expected a positive int, got {dim!r}")
    if isinstance(k, Tensor):
        kk = k.to(torch.float64)
        if kk.numel() and (float(kk.min()) < 0 or float(kk.max()) > dim):
            raise ValueError(f"k: expected values in [0, {dim}], got {k}")
        return kk / dim
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= dim:
        raise ValueError(f"k: expected an int in [0, {dim}], got {k!r}")
    return k / dim


def subspace_overlap(a: Tensor, b: Tensor) -> float:
    """Normalized overlap ||AᵀB||_F^2 / k of two k-dim subspaces.

    Equals the mean of cos^2 of the principal angles: 1 for equal, 0 for orthogonal spans.

    Args:
        a: (D, k) orthonormal basis.
        b: (D, k) orthonormal basis.

    Returns:
        The overlap in [0, 1].

    Raises:
        ValueError: If the shapes differ or k = 0.
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape != b.shape or a.shape[1] == 0:
        got = f"{tuple(a.shape)} and {tuple(b.shape)}"
        raise ValueError(f"a, b: expected equal shapes (D, k) with k >= 1, got {got}")
    return float((a.T @ b).pow(2).sum() / a.shape[1])


def _angles_from_cosines(cos: Tensor) -> Tensor:
    # Rounding can push singular values slightly above 1; clamp so arccos stays real.
    return torch.sort(torch.arccos(cos.clamp(0.0, 1.0))).values


def principal_angles(a: Tensor, b: Tensor) -> Tensor:
    """Principal angles between span(a) and span(b).

    Args:
        a: (D, k1) orthonormal basis.
        b: (D, k2) orthonormal basis.

    Returns:
        Float64 tensor of min(k1, k2) angles in radians, ascending.

    Raises:
        ValueError: If the row counts differ.
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a, b: expected the same row count D, got {a.shape[0]} and {b.shape[0]}")
    return _angles_from_cosines(torch.linalg.svdvals(a.T @ b))


def mask_principal_angles(w: Tensor, idx: Tensor) -> Tensor:
    """Principal angles between span(w) and the coordinate subspace span{e_i : i in idx}.

    Uses EᵀW = W[idx], so no (D, |idx|) identity block is built.

    Args:
        w: (D, k) orthonormal basis.
        idx: 1-D distinct indices in [0, D).

    Returns:
        Float64 tensor of min(k, |idx|) angles in radians, ascending.

    Raises:
        ValueError: On a wrong shape or bad indices.
    """
    w = _matrix(w, "w")
    rows = _index_set(idx, w.shape[0], "idx")
    return _angles_from_cosines(torch.linalg.svdvals(w[rows]))


def grassmann_distances(angles: Tensor) -> dict[str, float]:
    """Standard Grassmann distances computed from principal angles θ.

    Args:
        angles: 1-D non-empty tensor of principal angles in [0, π/2].

    Returns:
        Dict with "geodesic" ||θ||_2, "chordal_max" max 2 sin(θ/2), "chordal_2"
        ||2 sin(θ/2)||_2, "projection_max" max sin θ, "projection_2" ||sin θ||_2 and
        "fubini_study" arccos Π cos θ.

    Raises:
        ValueError: If ``angles`` is not 1-D, is empty, or leaves [0, π/2].
    """
    th = _shaped(angles, 1, "angles", nonempty=True).to(torch.float64)
    tol = 1e-6  # admits float32 rounding of 0 and π/2
    lo, hi = float(th.min()), float(th.max())  # NaN fails both comparisons below
    if not (math.isfinite(hi) and -tol <= lo and hi <= math.pi / 2 + tol):
        raise ValueError(f"angles: expected finite values in [0, π/2], got {th.tolist()}")
    th = th.clamp(0.0, math.pi / 2)
    chord = 2.0 * torch.sin(th / 2.0)
    proj = torch.sin(th)
    # cos θ >= 0 on [0, π/2], so the product is already in [0, 1]; clamp guards rounding.
    prod_cos = torch.prod(torch.cos(th)).clamp(0.0, 1.0)
    return {
        "geodesic": float(torch.linalg.vector_norm(th)),
        "chordal_max": float(chord.max()),
        "chordal_2": float(torch.linalg.vector_norm(chord)),
        "projection_max": float(proj.max()),
        "projection_2": float(torch.linalg.vector_norm(proj)),
        "fubini_study": float(torch.arccos(prod_cos)),
    }


def mask_iou(a: Tensor, b: Tensor) -> float:
    """Intersection over union |a ∩ b| / |a ∪ b| of two index sets.

    Args:
        a: 1-D integer indices (repeats are treated as one).
        b: 1-D integer indices (repeats are treated as one).

    Returns:
        The IoU in [0, 1].

    Raises:
        ValueError: If an input is not a 1-D integer tensor or both are empty.
    """
    ua, ub = torch.unique(_indices(a, "a")), torch.unique(_indices(b, "b"))
    union = torch.unique(torch.cat([ua, ub])).numel()
    if union == 0:
        raise ValueError("a, b: expected at least one index in total, got two empty sets")
    inter = int(torch.isin(ua, ub).sum())
    return inter / union


def curvature_concentration(eigenvalues: Tensor, frobenius_sq: float) -> Tensor:
    """Share of ||H||_F^2 = Σλ² held by the first k eigenvalues, for k = 1..K.

    Args:
        eigenvalues: 1-D tensor of K eigenvalues, in the order to accumulate.
        frobenius_sq: ||H||_F^2 of the full operator (e.g. an estimate), > 0.

    Returns:
        Float64 tensor of shape (K,): cumsum(λ²) / frobenius_sq. It ends at 1 when the
        eigenvalues are the whole spectrum and ``frobenius_sq`` is exact.

    Raises:
        ValueError: If ``eigenvalues`` is not a non-empty 1-D tensor or ``frobenius_sq`` is
            not a finite positive number.
    """
    lam = _shaped(eigenvalues, 1, "eigenvalues", nonempty=True).to(torch.float64)
    fro = float(frobenius_sq)
    if not math.isfinite(fro) or fro <= 0.0:
        raise ValueError(f"frobenius_sq: expected a finite positive number, got {frobenius_sq!r}")
    return torch.cumsum(lam**2, dim=0) / fro


def frobenius_sq_estimate(residual_sq_norms: Tensor) -> float:
    """Unbiased estimate of ||E||_F^2 from Gaussian probes (Tropp et al. 2019, §6).

    For ω ~ N(0, I), E||Eω||^2 = tr(EᵀE) = ||E||_F^2, so the mean over q probes is unbiased.

    Args:
        residual_sq_norms: 1-D non-empty tensor of ||E ω_i||^2, i = 1..q.

    Returns:
        The mean (1/q) Σ ||E ω_i||^2.

    Raises:
        ValueError: If the input is not a non-empty 1-D tensor of finite values >= 0.
    """
    r = _shaped(residual_sq_norms, 1, "residual_sq_norms", nonempty=True).to(torch.float64)
    if not bool(torch.isfinite(r).all()) or float(r.min()) < 0.0:
        raise ValueError(f"residual_sq_norms: expected finite values >= 0, got {r.tolist()}")
    return float(r.mean())


def aposteriori_tail_bounds(q: int, factor: float) -> tuple[float, float]:
    """Bounds on the chance that the q-probe estimate is off by more than ``factor``.

    With E = A - Â and Gaussian probes, q·err²/||E||_F^2 = Σ_j p_j X_j, where p_j =
    σ_j(E)^2 / ||E||_F^2 sum to 1 and X_j ~ χ²_q are independent. By Jensen, for convex f,
    E f(Σ p_j X_j) <= Σ p_j E f(X_j) = E f(X_1): the weighted sum is dominated in convex
    order by the rank-one case χ²_q (equal means q). Chernoff bounds use only E exp(±λY),
    expectations of convex functions, so the χ²_q bounds P(χ²_q <= qt) <= (t e^{1-t})^{q/2}
    (t < 1) and P(χ²_q >= qt) <= (t e^{1-t})^{q/2} (t > 1) hold for every E.

    Args:
        q: Number of probes (positive int).
        factor: Multiplicative error level (> 1).

    Returns:
        (p_under, p_over): bounds on P{err² <= ||E||_F^2 / factor} (t = 1/factor) and
        P{err² >= factor·||E||_F^2} (t = factor). Both decrease in q.

    Raises:
        ValueError: If ``q`` is not a positive int or ``factor`` is not a finite number > 1.
    """
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ValueError(f"q: expected a positive int, got {q!r}")
    f = float(factor)
    if not math.isfinite(f) or f <= 1.0:
        raise ValueError(f"factor: expected a finite number > 1, got {factor!r}")

    def chernoff(t: float) -> float:
        # Log space: (t e^{1-t})^{q/2} underflows gracefully instead of overflowing in t.
        return math.exp(0.5 * q * (math.log(t) + 1.0 - t))

    return chernoff(1.0 / f), chernoff(f)
