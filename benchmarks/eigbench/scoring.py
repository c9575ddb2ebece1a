"""Errors of a method's eigenpairs against the reference's.

Both sides are sorted by descending ``|λ|``. Subspace overlaps ``‖AᵀB‖²_F / j`` need
orthonormal bases; a method's vectors need not be exactly orthonormal (float32, power
iteration), so each leading block ``V[:, :j]`` is orthonormalized through the Cholesky
factor ``R`` of the Gram matrix (``V R⁻¹``, the same span). Only ``m×m`` and ``m×K``
products are formed, streamed over row blocks, so D = 1M costs no ``D×m`` float64 copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ROW_BLOCK = 1 << 17


def sort_by_magnitude(values: torch.Tensor, vectors: torch.Tensor):
    """Eigenpairs in order of descending ``|λ|`` (stable)."""
    order = torch.argsort(values.abs(), descending=True, stable=True)
    return values[order], vectors[:, order]


def _products(a: torch.Tensor, b: torch.Tensor):
    """``AᵀA``, ``BᵀB`` and ``AᵀB`` in float64, over row blocks."""
    ga = torch.zeros(a.shape[1], a.shape[1], dtype=torch.float64)
    gb = torch.zeros(b.shape[1], b.shape[1], dtype=torch.float64)
    cross = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)
    for start in range(0, a.shape[0], ROW_BLOCK):
        ra = a[start : start + ROW_BLOCK].to(torch.float64)
        rb = b[start : start + ROW_BLOCK].to(torch.float64)
        ga += ra.T @ ra
        gb += rb.T @ rb
        cross += ra.T @ rb
    return ga, gb, cross


def _upper_factor(gram: torch.Tensor) -> torch.Tensor | None:
    """``R`` with ``Gram = RᵀR``; its leading blocks factor the leading Gram blocks."""
    lower, info = torch.linalg.cholesky_ex(gram)
    return None if int(info) else lower.T


def _overlap(ra: torch.Tensor, rb: torch.Tensor, cross: torch.Tensor, j: int) -> float:
    """``‖QaᵀQb‖²_F / j`` for the orthonormalized leading ``j`` columns of both sides."""
    c = cross[:j, :j]
    c = torch.linalg.solve_triangular(ra[:j, :j].T, c, upper=False)  # Ra⁻ᵀ C
    c = torch.linalg.solve_triangular(rb[:j, :j], c, upper=True, left=False)  # … Rb⁻¹
    return float(c.square().sum() / j)


def _mask_overlap(vectors: torch.Tensor, r: torch.Tensor, mask: torch.Tensor) -> float:
    """``‖Q[mask, :k]‖²_F / k`` with ``Q = V[:, :k] R⁻¹`` and ``k = len(mask)``."""
    k = len(mask)
    rows = vectors[mask, :k].to(torch.float64)
    q = torch.linalg.solve_triangular(r[:k, :k], rows, upper=True, left=False)
    return float(q.square().sum() / k)


def _relative_errors(values: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    return ((values - ref).abs() / ref.abs()).numpy()


def score(
    ref: tuple[torch.Tensor, torch.Tensor],
    pairs: tuple[torch.Tensor, torch.Tensor],
    magnitude_order: torch.Tensor,
    mask_ks: tuple[int, ...],
) -> dict[str, Any]:
    """Eigenvalue errors, eigenspace overlaps and mask-overlap errors of ``pairs`` vs ``ref``.

    Keys: ``top10_max_rel``, ``top10_median_rel``, ``top100_median_rel`` (eigenvalues, relative
    to the reference's), ``overlap_top10`` and ``overlap_topk`` (with ``k_compared`` = the
    fewer pairs of the two sides), and per mask size ``k``: ``mask_overlap_k{k}`` (the method's),
    ``mask_overlap_ref_k{k}`` and ``mask_err_k{k}`` (relative difference). Missing where a
    side has too few pairs; ``None`` where the vectors are numerically rank-deficient.
    """
    ref_values, ref_vectors = (t.to(torch.float64) if t.ndim == 1 else t for t in ref)
    values, vectors = sort_by_magnitude(pairs[0].to(torch.float64), pairs[1])
    n = min(len(values), len(ref_values))
    rel = _relative_errors(values[:n], ref_values[:n])
    out: dict[str, Any] = {"k_compared": n}
    out["top10_max_rel"] = float(rel[:10].max())
    out["top10_median_rel"] = float(np.median(rel[:10]))
    if n >= 100:
        out["top100_median_rel"] = float(np.median(rel[:100]))
    ga, gb, cross = _products(vectors[:, :n], ref_vectors[:, :n])
    ra, rb = _upper_factor(ga), _upper_factor(gb)
    usable = ra is not None and rb is not None
    out["overlap_top10"] = _overlap(ra, rb, cross, min(10, n)) if usable else None
    out["overlap_topk"] = _overlap(ra, rb, cross, n) if usable else None
    for k in mask_ks:
        if k > n:
            continue
        mask = magnitude_order[:k]
        mine = _mask_overlap(vectors, ra, mask) if usable else None
        theirs = _mask_overlap(ref_vectors, rb, mask) if usable else None
        out[f"mask_overlap_k{k}"] = mine
        out[f"mask_overlap_ref_k{k}"] = theirs
        out[f"mask_err_k{k}"] = None if mine is None else abs(mine - theirs) / theirs
    return out
