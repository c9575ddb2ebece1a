"""Rayleigh–Ritz on a Krylov basis: streamed over row blocks, or from its small matrices alone.

After ``p`` waves (:mod:`hessketch.krylov`), Rayleigh–Ritz on the ``n = Σ b_j``-dimensional
space ``span(V)`` solves the generalized problem ``(VᵀHV) u = θ (VᵀV) u``; the Ritz vectors are
``w = V u``. Because every basis vector's image ``HV`` was measured, the Ritz residuals
``‖Hw − θw‖ = ‖HVu − θVu‖`` come for free: the decomposition carries its own certificate
without a further wave of products.

Everything Rayleigh–Ritz needs besides the vectors themselves lives in three ``n×n`` matrices,
``G = VᵀV``, ``T = VᵀHV`` and ``K = (HV)ᵀHV`` (:class:`ProjectedMatrices`). They grow by one
block row and column per wave, for ``O(D·n·b)`` work, so an adaptive run can judge its
certificate after every wave without a pass of ``O(D·n²)`` (:func:`small_rayleigh_ritz`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hessketch.errors import NumericalError
from hessketch.krylov import ROW_BLOCK_BYTES, Basis, _cholesky, _f64, row_blocks

__all__ = [
    "ProjectedMatrices",
    "RitzResult",
    "SmallRitz",
    "rayleigh_ritz",
    "small_rayleigh_ritz",
    "wave_blocks",
]

F64 = torch.float64


@dataclass
class RitzResult:
    """Rayleigh–Ritz on a Krylov basis.

    Attributes:
        eigenvalues: ``(k,)`` Ritz values sorted by descending ``|θ|`` (float64).
        coefficients: ``(n, k)`` ``U`` with Ritz vectors ``W = V U`` (``V`` all waves' columns).
        residual_norms: ``(k,)`` ``‖H w_i − θ_i w_i‖`` from the measured images.
        vector_norms: ``(k,)`` ``‖w_i‖`` as computed from the stored basis (1 up to round-off).
        basis_dim: ``n``, the dimension of the space searched.
        all_values: ``(n,)`` every Ritz value of the basis, same order (the first ``k`` are
            :attr:`eigenvalues`): the pairs beyond ``k`` bound the gap of the space bound.
        all_residuals: ``(n,)`` their residual norms: the first ``k`` measured directly, the
            rest from the small matrices (an upper bound, with their round-off added).
        in_space: ``(n,)`` ``‖P_V(Hw − θw)‖``, the part of each residual inside the basis (zero
            for exact, symmetric products; the visible share of the products' error).
        orthonormality: ``‖WᵀW − I‖₂`` of all Ritz vectors (float64 round-off).
    """

    eigenvalues: torch.Tensor
    coefficients: torch.Tensor
    residual_norms: torch.Tensor
    vector_norms: torch.Tensor
    basis_dim: int
    all_values: torch.Tensor
    all_residuals: torch.Tensor
    in_space: torch.Tensor
    orthonormality: float


@dataclass
class SmallRitz:
    """Rayleigh–Ritz from the small matrices of a basis alone (no pass over its rows).

    From ``G = VᵀV``, ``T = VᵀHV`` and ``K = (HV)ᵀHV`` (``n×n``): all Ritz values by
    descending ``|θ|``, coefficients ``Y`` (``W = VY``, ``YᵀGY = I``), residual norms from
    ``‖HVy − θVy‖² = yᵀKy − 2θ yᵀTy + θ² yᵀGy`` with a bound on its round-off added (so they
    are upper bounds, resolved down to about ``√(n·u)‖H‖``), the in-space parts
    ``‖P_V r‖ = ‖L⁻¹(Ty − θGy)‖`` (``G = LLᵀ``) and ``‖YᵀGY − I‖₂``.
    """

    values: torch.Tensor
    coefficients: torch.Tensor
    residuals: torch.Tensor
    in_space: torch.Tensor
    orthonormality: float


def small_rayleigh_ritz(
    gram: torch.Tensor, proj: torch.Tensor, images_gram: torch.Tensor
) -> SmallRitz:
    """Ritz pairs and their residuals from ``G``, ``T`` and ``K`` (see :class:`SmallRitz`)."""
    chol = _cholesky(gram, "Krylov basis")
    n = len(gram)
    # L⁻¹ T L⁻ᵀ with T symmetrized: a standard symmetric problem in an orthonormal basis.
    half = torch.linalg.solve_triangular(chol, (proj + proj.T) / 2, upper=False)
    core = torch.linalg.solve_triangular(chol, half.T, upper=False)
    theta, y = torch.linalg.eigh((core + core.T) / 2)
    order = torch.argsort(theta.abs(), descending=True, stable=True)
    theta = theta[order]
    coefficients = torch.linalg.solve_triangular(chol.T, y[:, order], upper=True)
    c = coefficients
    quad = (
        (c * (images_gram @ c)).sum(0)
        - 2 * theta * (c * (proj @ c)).sum(0)
        + theta.square() * (c * (gram @ c)).sum(0)
    )
    unit = torch.finfo(torch.float64).eps
    norms = [float(torch.linalg.matrix_norm(m, 2)) for m in (images_gram, proj, gram)]
    size = c.square().sum(0)
    slack = (
        8 * n * unit * size * (norms[0] + 2 * theta.abs() * norms[1] + theta.square() * norms[2])
    )
    residuals = (quad.clamp_min(0) + slack).sqrt()
    inside = torch.linalg.solve_triangular(chol, proj @ c - (gram @ c) * theta, upper=False)
    ortho = c.T @ gram @ c - torch.eye(n, dtype=torch.float64)
    return SmallRitz(
        theta,
        coefficients,
        residuals,
        inside.norm(dim=0),
        float(torch.linalg.matrix_norm(ortho, 2)),
    )


def rayleigh_ritz(
    basis: Basis,
    k: int,
    *,
    on_vector_rows: Callable[[slice, torch.Tensor], None] | None = None,
    budget: int = ROW_BLOCK_BYTES,
) -> RitzResult:
    """Top-``k`` Ritz pairs (by ``|θ|``) of ``span(V)`` and their residuals, in two passes.

    Pass 1 forms ``G = VᵀV``, ``T = VᵀHV`` and ``K = (HV)ᵀHV``; the small problem gives every
    Ritz value and residual (:func:`small_rayleigh_ritz`); pass 2 forms the top-``k`` Ritz
    vectors and measures their residuals directly (exact to round-off, also when tiny).

    Args:
        basis: all measured waves (``V`` and ``HV`` of each).
        k: number of Ritz pairs kept.
        on_vector_rows: called with each row range and the Ritz vectors' rows (float64).
        budget: float64 working memory per row block, in bytes.

    Raises:
        NumericalError: if the basis has fewer than ``k`` directions or its Gram matrix is
            not positive definite.
    """
    n = sum(basis.widths())
    if n < k:
        raise NumericalError(
            f"the Krylov basis has {n} directions, fewer than k={k}: the operator has an "
            f"invariant subspace of dimension {n} containing the start block; use a smaller k"
        )
    blocks = list(row_blocks(basis.dim, 2 * n, budget))
    gram = torch.zeros(n, n, dtype=torch.float64)
    proj = torch.zeros(n, n, dtype=torch.float64)
    images_gram = torch.zeros(n, n, dtype=torch.float64)
    for rows in blocks:
        v, hv = _f64(basis, "V", rows), _f64(basis, "HV", rows)
        gram += v.T @ v
        proj += v.T @ hv
        images_gram += hv.T @ hv
    small = small_rayleigh_ritz(gram, proj, images_gram)
    theta = small.values[:k]
    coefficients = small.coefficients[:, :k]
    residual_sq = torch.zeros(k, dtype=torch.float64)
    norm_sq = torch.zeros(k, dtype=torch.float64)
    for rows in blocks:
        v, hv = _f64(basis, "V", rows), _f64(basis, "HV", rows)
        w = v @ coefficients
        residual_sq += (hv @ coefficients - w * theta).square().sum(0)
        norm_sq += w.square().sum(0)
        if on_vector_rows is not None:
            on_vector_rows(rows, w)
    residuals = small.residuals.clone()
    residuals[:k] = residual_sq.sqrt()
    return RitzResult(
        theta,
        coefficients,
        residual_sq.sqrt(),
        norm_sq.sqrt(),
        n,
        small.values,
        residuals,
        small.in_space,
        small.orthonormality,
    )


def wave_blocks(
    basis: Basis, *, budget: int = ROW_BLOCK_BYTES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The new blocks of ``G``, ``T`` and ``K`` when the last wave joins the basis (one pass).

    Returns ``(VᵀV_w, VᵀHV_w, V_wᵀHV, HVᵀHV_w)`` for the last wave ``w`` against all waves
    (``n×b``, ``n×b``, ``b×n``, ``n×b``), float64.
    """
    widths = basis.widths()
    n, b = sum(widths), widths[-1]
    last = len(widths) - 1
    gram = torch.zeros(n, b, dtype=F64)
    proj = torch.zeros(n, b, dtype=F64)
    proj_row = torch.zeros(b, n, dtype=F64)
    images = torch.zeros(n, b, dtype=F64)
    for rows in row_blocks(basis.dim, 2 * (n + b), budget):
        v, hv = _f64(basis, "V", rows), _f64(basis, "HV", rows)
        v_w = basis.wave_columns(last, "V", rows).to(F64)
        hv_w = basis.wave_columns(last, "HV", rows).to(F64)
        gram += v.T @ v_w
        proj += v.T @ hv_w
        proj_row += v_w.T @ hv
        images += hv.T @ hv_w
    return gram, proj, proj_row, images


class ProjectedMatrices:
    """``G = VᵀV``, ``T = VᵀHV`` and ``K = (HV)ᵀHV`` of a growing basis (see the module)."""

    def __init__(self) -> None:
        self.gram = torch.zeros(0, 0, dtype=F64)
        self.proj = torch.zeros(0, 0, dtype=F64)
        self.images = torch.zeros(0, 0, dtype=F64)

    @property
    def dim(self) -> int:
        """Columns of the basis so far."""
        return len(self.gram)

    def extend(
        self,
        gram: torch.Tensor,
        proj: torch.Tensor,
        proj_row: torch.Tensor,
        images: torch.Tensor,
    ) -> None:
        """Add a wave's blocks (as :func:`wave_blocks` returns them)."""
        n, b = gram.shape
        if n != self.dim + b or proj.shape != (n, b) or proj_row.shape != (b, n):
            raise ValueError(f"blocks of shape {tuple(gram.shape)} do not extend {self.dim}")
        self.gram = _grow(self.gram, gram, gram.T)
        self.proj = _grow(self.proj, proj, proj_row)
        self.images = _grow(self.images, images, images.T)

    def ritz(self) -> SmallRitz:
        """:func:`small_rayleigh_ritz` of the matrices so far."""
        return small_rayleigh_ritz(self.gram, self.proj, self.images)


def _grow(old: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    n, b = column.shape
    new = torch.zeros(n, n, dtype=F64)
    new[: n - b, : n - b] = old
    new[:, n - b :] = column
    new[n - b :, :] = row
    return new
