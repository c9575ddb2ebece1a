"""What a sketch is: its sizes, its test matrices, and how its measurements split into blocks.

A sketch of a symmetric ``D×D`` operator ``H`` with ``k`` outer and ``s`` inner measurements
consists of (DESIGN §1.3, plus two by-products that make the reduction out-of-core):

- ``Y = H Φ[:k]ᵀ`` (``D×k``), the outer measurements;
- ``Z = Ψ H Φᵀ`` (``s×s``), the inner measurements;
- ``PhiY = Φ Y`` (``s×k``), so that ``ΦQ`` never needs the transform applied to ``Q``
  (``ΨQ`` is free: ``ΨY = Z[:, :k]``);
- ``HOmega = H Ω`` (``D×q``) for ``q`` Gaussian probes, for the a-posteriori error estimate.

Measurements are grouped in fixed *blocks* of ``block_size`` consecutive indices. Blocks are
the unit of work of a measurement shard and the column chunk of every stored array, so any
number of shards writes whole chunks only, and the sketch does not depend on the shard count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from hessketch.testmatrices import (
    TEST_MATRIX_KINDS,
    Gaussian,
    TestMatrix,
    derive_seed,
    make_test_matrix,
)

__all__ = ["Block", "SketchSpec", "measure_block", "shard_blocks"]

# Building an SSRFT or sparse-sign matrix costs O(D); blocks of one sketch share it.
_test_matrix = functools.lru_cache(maxsize=8)(make_test_matrix)

BlockKind = Literal["sketch", "probe", "wave"]


@dataclass(frozen=True)
class Block:
    """A range ``[start, stop)`` of sketch indices (``kind="sketch"``) or probe indices."""

    kind: BlockKind
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of measurements (HVPs) in the block."""
        return self.stop - self.start

    def to_list(self) -> list[Any]:
        """JSON form ``[kind, start, stop]``."""
        return [self.kind, self.start, self.stop]


@dataclass(frozen=True)
class SketchSpec:
    """Sizes and randomness of a sketch; every test vector is a pure function of these."""

    dim: int
    k: int
    s: int
    seed: int = 0
    test_matrix: str = "ssrft"
    block_size: int = 64
    probes: int = 0

    def __post_init__(self) -> None:
        if self.test_matrix not in TEST_MATRIX_KINDS:
            raise ValueError(
                f"test_matrix must be one of {TEST_MATRIX_KINDS}, got {self.test_matrix!r}"
            )
        if not 1 <= self.k <= self.s:
            raise ValueError(f"need 1 <= k <= s, got k={self.k}, s={self.s}")
        if self.s > self.dim:
            raise ValueError(f"need s <= dim, got s={self.s} > dim={self.dim}")
        if self.block_size < 1 or self.probes < 0:
            raise ValueError(
                f"need block_size >= 1 and probes >= 0, got {self.block_size}, {self.probes}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (inverse of ``SketchSpec(**d)``)."""
        return asdict(self)

    def right(self) -> TestMatrix:
        """The right test matrix ``Φ`` (``s×D``)."""
        return _test_matrix(self.test_matrix, self.dim, derive_seed(self.seed, "right"), self.s)

    def left(self) -> TestMatrix:
        """The left test matrix ``Ψ`` (``s×D``), independent of ``Φ``."""
        return _test_matrix(self.test_matrix, self.dim, derive_seed(self.seed, "left"), self.s)

    def probe_matrix(self) -> TestMatrix:
        """Gaussian probes for the a-posteriori error (rows scaled to unit variance on use)."""
        return Gaussian(self.dim, derive_seed(self.seed, "probes"))

    def probe_vectors(
        self,
        start: int,
        stop: int,
        *,
        dtype: torch.dtype = torch.float32,
        coords: slice | None = None,
    ) -> torch.Tensor:
        """Standard Gaussian probes ``ω_start … ω_{stop-1}`` as columns, ``(D, stop-start)``.

        With ``coords`` (a step-1 slice), only those rows, generated without the others.
        """
        return (
            self.probe_matrix()
            .rows(start, stop, dtype=torch.float64, coords=coords)
            .mul_(math.sqrt(self.dim))
            .to(dtype)
        )

    def blocks(self) -> list[Block]:
        """All measurement blocks: sketch blocks over ``range(s)``, then probe blocks."""
        bs = self.block_size
        out = [Block("sketch", a, min(a + bs, self.s)) for a in range(0, self.s, bs)]
        out += [Block("probe", a, min(a + bs, self.probes)) for a in range(0, self.probes, bs)]
        return out


def shard_blocks(spec: SketchSpec, shard: int, num_shards: int) -> list[Block]:
    """The blocks measured by shard ``shard`` (0-based) of ``num_shards``.

    Blocks are dealt round-robin so that every shard gets a similar number of HVPs.
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard index {shard} is outside [0, {num_shards})")
    return spec.blocks()[shard::num_shards]


def measure_block(
    spec: SketchSpec,
    op: Any,
    block: Block,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> dict[str, tuple[int, torch.Tensor]]:
    """Measure one block: the HVPs with its test vectors and what they project to.

    Args:
        spec: the sketch.
        op: the operator, a callable mapping ``(D, b)`` blocks to ``(D, b)`` blocks.
        block: the block to measure.
        dtype: dtype of the test vectors and of the stored results.
        device: where the test vectors are sent (the operator's device).

    Returns:
        ``{array name: (first column, values)}`` for each stored array the block touches:
        ``Z``, and for sketch indices ``< k`` also ``Y`` and ``PhiY``; ``HOmega`` for probes.
        Values are on the CPU.
    """
    if block.kind == "probe":
        omega = spec.probe_vectors(block.start, block.stop, dtype=dtype).to(device)
        return {"HOmega": (block.start, op(omega).cpu())}
    phi = spec.right().rows(block.start, block.stop, dtype=dtype, device=device)
    y = op(phi)
    out = {"Z": (block.start, spec.left().apply(y, spec.s).cpu())}
    n_outer = min(block.stop, spec.k) - block.start
    if n_outer > 0:
        y_outer = y[:, :n_outer]
        out["Y"] = (block.start, y_outer.cpu())
        out["PhiY"] = (block.start, spec.right().apply(y_outer, spec.s).cpu())
    return out
