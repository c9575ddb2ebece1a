"""Block Krylov iteration with Rayleigh–Ritz, streamed over row blocks (out of core).

The iterative method behind ``passes > 1``: block Lanczos with full reorthogonalization
(Golub & Underwood 1977; as randomized block Krylov, Musco & Musco 2015). A *wave* ``j`` is a
block ``V_j`` of basis vectors together with its measured images ``HV_j``:

- wave 0: ``V_0 = Ω``, the first ``b`` test vectors (well conditioned; orthonormal for SSRFT);
- wave ``j+1``: ``V_{j+1}`` is ``HV_j`` orthogonalized against every earlier block (block
  classical Gram–Schmidt, twice, in the Gram metric of the stored basis), then orthonormalized
  (tall-skinny QR); directions already in the span are dropped (the space is invariant);
- after ``p`` waves, Rayleigh–Ritz on the ``Σ b_j``-dimensional space ``span(V)``
  (:mod:`hessketch.ritz`).

Every step streams over row blocks of the stored waves, so memory is a row block times the
basis size plus small square matrices; the same code serves in-memory bases and Zarr stores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from hessketch.errors import NumericalError

__all__ = [
    "Basis",
    "BlockPlan",
    "InMemoryBasis",
    "next_block",
    "plan_next_block",
    "row_blocks",
    "write_next_block",
]

log = logging.getLogger(__name__)

# A direction of the new block is dropped when its norm after orthogonalization is below this
# fraction of the block's largest column norm: it lies in the span of the basis to float64
# round-off, so the Krylov space is (numerically) invariant there.
DROP_RTOL = 1e-10
# Float64 working memory per row block, in bytes (the row block shrinks as the basis grows).
ROW_BLOCK_BYTES = 256 * 2**20


class Basis(Protocol):
    """Read access to the waves of a Krylov basis: ``V_j`` and ``HV_j`` by row blocks."""

    dim: int

    def widths(self) -> list[int]:
        """Number of columns of each wave, in order."""
        ...

    def read(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """Rows of ``V`` or ``HV`` (``name``) of ``wave``, as float64."""
        ...

    def columns(self, name: str, rows: slice) -> torch.Tensor:
        """Rows of ``V`` or ``HV`` of all waves side by side (float64 or the stored dtype)."""
        ...

    def wave_columns(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """Rows of ``V`` or ``HV`` of one wave, in the dtype of :meth:`columns`."""
        ...


class InMemoryBasis:
    """A :class:`Basis` held in memory, in one preallocated ``(dim, capacity)`` pair of arrays.

    The Gram–Schmidt steps run on views of the stored arrays in their own dtype (no copies);
    Rayleigh–Ritz converts row blocks to float64.
    """

    def __init__(self, dim: int, capacity: int, dtype: torch.dtype = torch.float32) -> None:
        self.dim = dim
        self.dtype = dtype
        self.row_block = dim  # views cost nothing: one block
        self.arrays = {name: torch.empty(dim, capacity, dtype=dtype) for name in ("V", "HV")}
        self._widths: list[int] = []

    def widths(self) -> list[int]:
        """See :class:`Basis`."""
        return list(self._widths)

    def append(self, v: torch.Tensor, hv: torch.Tensor) -> None:
        """Add a wave: basis block ``v`` and its image ``hv`` (both ``(dim, b)``)."""
        n, b = sum(self._widths), v.shape[1]
        if v.shape != hv.shape or v.shape[0] != self.dim:
            raise ValueError(f"wave blocks must both be ({self.dim}, b), got {v.shape}, {hv.shape}")
        if n + b > self.arrays["V"].shape[1]:
            raise ValueError(f"the basis holds at most {self.arrays['V'].shape[1]} columns")
        self.arrays["V"][:, n : n + b] = v
        self.arrays["HV"][:, n : n + b] = hv
        self._widths.append(b)

    def read(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """See :class:`Basis`."""
        a = sum(self._widths[:wave])
        return self.arrays[name][rows, a : a + self._widths[wave]].to(torch.float64)

    def columns(self, name: str, rows: slice) -> torch.Tensor:
        """See :class:`Basis`: a view in the stored dtype."""
        return self.arrays[name][rows, : sum(self._widths)]

    def wave_columns(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """See :class:`Basis`: a view in the stored dtype."""
        a = sum(self._widths[:wave])
        return self.arrays[name][rows, a : a + self._widths[wave]]


def row_blocks(dim: int, columns: int, budget: int = ROW_BLOCK_BYTES) -> Iterator[slice]:
    """Row ranges whose float64 working set (about 4 × rows × ``columns``) fits ``budget``."""
    size = max(1, min(dim, budget // (32 * max(columns, 1))))
    for start in range(0, dim, size):
        yield slice(start, min(start + size, dim))


def _blocks(basis: Basis, columns: int, budget: int) -> list[slice]:
    row_block = getattr(basis, "row_block", None)
    if row_block is not None:
        return [slice(a, min(a + row_block, basis.dim)) for a in range(0, basis.dim, row_block)]
    return list(row_blocks(basis.dim, columns, budget))


def _f64(basis: Basis, name: str, rows: slice) -> torch.Tensor:
    return basis.columns(name, rows).to(torch.float64)


def _last_images(basis: Basis, rows: slice) -> torch.Tensor:
    """``HV`` of the last wave only (the earlier waves' images are not needed)."""
    return basis.wave_columns(len(basis.widths()) - 1, "HV", rows)


def _cholesky(gram: torch.Tensor, what: str) -> torch.Tensor:
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise NumericalError(
            f"the Gram matrix of the {what} is not positive definite (leading minor {int(info)}): "
            "the stored basis is corrupt or lost orthogonality"
        )
    return chol


@dataclass
class BlockPlan:
    """How the next block follows from the last wave: ``V_next = (HV_last − V C) M``.

    Attributes:
        coef: ``(n, b)`` the Gram–Schmidt coefficients ``C`` against all earlier blocks.
        transform: ``(b, width)`` ``M``, orthonormalizing what is left; ``width`` may be 0.
    """

    coef: torch.Tensor
    transform: torch.Tensor

    @property
    def width(self) -> int:
        """Columns of the next block."""
        return self.transform.shape[1]


def plan_next_block(basis: Basis, *, budget: int = ROW_BLOCK_BYTES) -> BlockPlan:
    """Orthogonalize the last wave's images against every block, then orthonormalize.

    ``HV_last`` is orthogonalized against all waves' ``V`` by block classical Gram–Schmidt,
    twice, then orthonormalized by a streamed tall-skinny QR: three passes over the rows. The
    blocks after the first are orthonormal and orthogonal to the rest by construction, so the
    Gram matrix of the basis is that of ``V_0`` (a random block, well conditioned but not
    exactly orthonormal) padded with the identity. Directions that lie in the span of the basis
    to round-off are dropped (the width is 0 when the Krylov space is invariant).
    """
    widths = basis.widths()
    last, n, b, b0 = len(widths) - 1, sum(widths), widths[-1], widths[0]
    blocks = _blocks(basis, n + b, budget)
    gram = torch.eye(n, dtype=torch.float64)
    gram0 = torch.zeros(b0, b0, dtype=torch.float64)
    coef = torch.zeros(n, b, dtype=torch.float64)
    col_sq = torch.zeros(b, dtype=torch.float64)
    for rows in blocks:
        v = basis.columns("V", rows)
        w = _last_images(basis, rows)
        gram0 += (v[:, :b0].T @ v[:, :b0]).to(torch.float64)
        coef += (v.T @ w).to(torch.float64)
        col_sq += w.to(torch.float64).square().sum(0)
    gram[:b0, :b0] = gram0
    chol = _cholesky(gram, "Krylov basis")
    coef = torch.cholesky_solve(coef, chol)
    again = torch.zeros(n, b, dtype=torch.float64)
    for rows in blocks:
        v = basis.columns("V", rows)
        w = _last_images(basis, rows)
        again += (v.T @ (w - v @ coef.to(v.dtype))).to(torch.float64)
    coef += torch.cholesky_solve(again, chol)
    r_factor = torch.zeros(0, b, dtype=torch.float64)
    for rows in blocks:
        v = basis.columns("V", rows)
        w = _last_images(basis, rows)
        rest = (w - v @ coef.to(v.dtype)).to(torch.float64)
        r_factor = torch.linalg.qr(torch.cat([r_factor, rest]), mode="r").R
    _, sigma, vh = torch.linalg.svd(r_factor)
    scale = float(col_sq.max().sqrt())
    keep = int((sigma > DROP_RTOL * scale).sum()) if scale > 0 else 0
    log.info("Krylov block %d: %d of %d directions are new", last + 1, keep, b)
    return BlockPlan(coef, vh[:keep].T / sigma[:keep])


def write_next_block(
    basis: Basis,
    plan: BlockPlan,
    write: Callable[[slice, torch.Tensor], None],
    *,
    budget: int = ROW_BLOCK_BYTES,
) -> None:
    """Form the planned block row block by row block and pass each to ``write``."""
    widths = basis.widths()
    n, b = sum(widths), widths[-1]
    for rows in _blocks(basis, n + b, budget):
        v = basis.columns("V", rows)
        w = _last_images(basis, rows)
        rest = w - v @ plan.coef.to(v.dtype)
        write(rows, rest @ plan.transform.to(v.dtype))


def next_block(
    basis: Basis,
    write: Callable[[slice, torch.Tensor], None],
    *,
    budget: int = ROW_BLOCK_BYTES,
) -> int:
    """:func:`plan_next_block`, then :func:`write_next_block`; returns the width (0: none)."""
    plan = plan_next_block(basis, budget=budget)
    if plan.width:
        write_next_block(basis, plan, write, budget=budget)
    return plan.width
