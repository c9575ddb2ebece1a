"""Accuracy bought until certified: block Krylov waves until the space certificate meets a target.

An adaptive run measures waves of ``width`` products (block Krylov, :mod:`hessketch.krylov`)
and after each wave judges the certificate the basis would give, from its small matrices alone
(:class:`hessketch.ritz.ProjectedMatrices`, ``O(D·n·b)`` per wave, no ``O(D·n²)`` pass). It
stops when

- the **target is met**: the bound on ``‖sin Θ‖_F`` of the top-``target.k`` space is within
  ``target.space_tolerance`` (:mod:`hessketch.spacebound`);
- the **budget is spent**: ``max_hvps`` products are measured (the last wave is cut to fit);
- the **Krylov space is invariant**: the last wave's images add no new direction.

The final certificate is then measured on the Ritz vectors themselves (streamed
Rayleigh–Ritz, :func:`hessketch.ritz.rayleigh_ritz`); in memory, if it falls short of an
estimate that said "met" and budget remains, the run goes on. The estimate and the final
certificate differ only by round-off: the estimate's residuals come from ``(HV)ᵀHV`` and are
resolved down to about ``√(n·u64)‖H‖``, the final ones are measured directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from hessketch.certificate import DEFAULT_SPACE_TOLERANCE
from hessketch.krylov import InMemoryBasis, plan_next_block, write_next_block
from hessketch.ritz import ProjectedMatrices, RitzResult, SmallRitz, rayleigh_ritz, wave_blocks
from hessketch.sketch import SketchSpec
from hessketch.spacebound import space_bounds

__all__ = [
    "STOP_REASONS",
    "Decision",
    "KrylovOutcome",
    "Target",
    "decide",
    "krylov_decomposition",
]

log = logging.getLogger(__name__)

STOP_REASONS = ("target met", "budget spent", "invariant space")


@dataclass(frozen=True)
class Target:
    """When an adaptive run stops (see the module docstring).

    Attributes:
        k: certify the top-``k`` space; the kept pairs' count for "the largest ``k``
            certifiable within the budget" (no space beyond the kept pairs is reported).
        max_hvps: the budget of products.
        space_tolerance: the bound on ``‖sin Θ‖_F`` that counts as certified.
    """

    k: int
    max_hvps: int
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_hvps < 1 or not self.space_tolerance > 0:
            raise ValueError(f"need k >= 1, max_hvps >= 1 and space_tolerance > 0, got {self}")

    @classmethod
    def parse(
        cls,
        target: int | str | None,
        kept: int,
        max_hvps: int,
        space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    ) -> Target:
        """From ``certificate.target``: an int ``k``, or ``"budget"``/``None`` (the kept pairs).

        Raises:
            ValueError: if ``target`` is neither, or exceeds the kept pairs.
        """
        if target is None or target == "budget":
            return cls(kept, max_hvps, space_tolerance)
        if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= kept:
            raise ValueError(f"target must be 'budget' or an int in 1..{kept}, got {target!r}")
        return cls(target, max_hvps, space_tolerance)


@dataclass
class Decision:
    """What an adaptive run decides after a wave.

    Attributes:
        reason: one of :data:`STOP_REASONS`, or ``"continue"``.
        hvps: products measured so far.
        basis_dim: directions in the basis.
        next_width: products of the next wave (0 when stopping).
        bound: the estimated bound on the top-``target.k`` space (``inf``: none yet).
        space_k: the estimated largest certified ``j`` (at most the kept pairs).
    """

    reason: str
    hvps: int
    basis_dim: int
    next_width: int
    bound: float
    space_k: int

    @property
    def go_on(self) -> bool:
        """Whether another wave is measured."""
        return self.reason == "continue"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (an infinite bound as ``"inf"``)."""
        d = asdict(self)
        d["bound"] = self.bound if math.isfinite(self.bound) else "inf"
        return d


def decide(
    ritz: SmallRitz,
    target: Target,
    *,
    kept: int,
    hvps: int,
    planned_width: int,
    product_dtype: torch.dtype = torch.float32,
    product_error: float | None = None,
) -> Decision:
    """Stop or go on after a wave, from the small-matrix Rayleigh–Ritz of the basis.

    Args:
        ritz: :func:`hessketch.ritz.small_rayleigh_ritz` of the basis measured so far.
        target: what to stop at.
        kept: pairs reported (the largest ``j`` counted in ``space_k``).
        hvps: products measured so far.
        planned_width: directions the next wave would have (0: the space is invariant).
        product_dtype: dtype of the products.
        product_error: ``ε`` of the products' accuracy (default by dtype).
    """
    n = len(ritz.values)
    bounds = space_bounds(
        ritz.values,
        ritz.residuals,
        in_space=ritz.in_space,
        galerkin=True,
        orthonormality=min(ritz.orthonormality, 0.5),
        product_dtype=product_dtype,
        product_error=product_error,
    )
    bound = float(bounds.bounds[target.k - 1]) if n >= target.k else math.inf
    space_k = min(bounds.certified_k(target.space_tolerance), kept)
    width = max(0, min(planned_width, target.max_hvps - hvps))
    if n >= kept and bound <= target.space_tolerance:
        reason = "target met"
    elif planned_width == 0:
        reason = "invariant space"
    elif width == 0:
        reason = "budget spent"
    else:
        reason = "continue"
    return Decision(reason, hvps, n, width if reason == "continue" else 0, bound, space_k)


@dataclass
class KrylovOutcome:
    """An in-memory block Krylov run: its Rayleigh–Ritz, vectors and history.

    Attributes:
        ritz: the final (streamed) Rayleigh–Ritz.
        vectors: ``(D, k)`` float64 Ritz vectors.
        hvps: products measured.
        waves: waves measured.
        stopped: why the run stopped (:data:`STOP_REASONS`; ``"passes"`` for a fixed count).
        history: the decision after every wave (adaptive runs).
    """

    ritz: RitzResult
    vectors: torch.Tensor
    hvps: int
    waves: int
    stopped: str
    history: list[Decision] = field(default_factory=list)


def krylov_decomposition(
    apply: Callable[[torch.Tensor], torch.Tensor],
    spec: SketchSpec,
    width: int,
    *,
    passes: int | None = None,
    target: Target | None = None,
    certified: Callable[[RitzResult], bool] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    product_error: float | None = None,
) -> KrylovOutcome:
    """Block Krylov from ``width`` test vectors, then Rayleigh–Ritz for ``spec.k`` pairs.

    The start block is the first ``width`` test vectors of ``spec``; then ``passes`` waves, or
    waves until ``target`` (exactly one of the two).

    Args:
        apply: the operator on ``(D, b)`` blocks (on ``device``).
        spec: the test matrices (start block) and ``k``.
        width: products per wave.
        passes: a fixed number of waves.
        target: an adaptive run's target and budget.
        certified: whether a final Rayleigh–Ritz meets the target (adaptive runs; default:
            the estimate's verdict is trusted).
        dtype: dtype of the basis and the products.
        device: device of the products.
        product_error: ``ε`` of the products' accuracy (default by dtype).
    """
    if (passes is None) == (target is None):
        raise ValueError("give exactly one of passes and target")
    capacity = passes * width if passes is not None else target.max_hvps  # type: ignore[union-attr]
    basis = InMemoryBasis(spec.dim, capacity, dtype)

    def images(v: torch.Tensor) -> torch.Tensor:
        bs = spec.block_size
        parts = [apply(v[:, a : a + bs].to(device)).cpu() for a in range(0, v.shape[1], bs)]
        return torch.cat(parts, dim=1)

    first = min(width, capacity)
    matrix = spec.right()
    start = torch.cat(
        [
            matrix.rows(a, min(a + spec.block_size, first), dtype=dtype)
            for a in range(0, first, spec.block_size)
        ],
        dim=1,
    )
    basis.append(start, images(start))
    hvps, history, stopped = first, [], "passes"
    projected = ProjectedMatrices()
    if target is not None:
        projected.extend(*wave_blocks(basis))
    while True:
        plan = plan_next_block(basis)
        if target is None:
            if len(basis.widths()) >= passes or plan.width == 0:  # type: ignore[operator]
                if plan.width == 0:
                    log.info("Krylov space invariant after %d waves", len(basis.widths()))
                break
            next_width = plan.width
        else:
            decision = decide(
                projected.ritz(),
                target,
                kept=spec.k,
                hvps=hvps,
                planned_width=plan.width,
                product_dtype=dtype,
                product_error=product_error,
            )
            history.append(decision)
            log.info(
                "wave %d: %d HVPs, estimated bound %.3g at k=%d, space_k ~ %d: %s",
                len(basis.widths()),
                hvps,
                decision.bound,
                target.k,
                decision.space_k,
                decision.reason,
            )
            stopped = decision.reason
            if decision.reason == "target met" and certified is not None:
                outcome = _finish(basis, spec.k, hvps, stopped, history)
                room = min(plan.width, target.max_hvps - hvps)
                if certified(outcome.ritz) or room == 0:
                    return outcome
                log.info("the measured certificate falls short of the estimate: one more wave")
                next_width = room
            elif not decision.go_on:
                break
            else:
                next_width = decision.next_width
        new = torch.empty(spec.dim, plan.width, dtype=dtype)
        write_next_block(basis, plan, lambda rows, values, out=new: out[rows].copy_(values))
        new = new[:, :next_width].contiguous()
        basis.append(new, images(new))
        hvps += next_width
        if target is not None:
            projected.extend(*wave_blocks(basis))
    return _finish(basis, spec.k, hvps, stopped, history)


def _finish(
    basis: InMemoryBasis, k: int, hvps: int, stopped: str, history: list[Decision]
) -> KrylovOutcome:
    vectors = torch.empty(basis.dim, k, dtype=torch.float64)
    ritz = rayleigh_ritz(basis, k, on_vector_rows=lambda rows, w: vectors[rows].copy_(w))
    return KrylovOutcome(ritz, vectors, hvps, len(basis.widths()), stopped, history)
