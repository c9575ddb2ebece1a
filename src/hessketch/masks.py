"""Parameter masks compared with the top-k eigenspace, as a registry.

The overlap of a k-subset ``S`` of the parameters with the top-k eigenspace ``W_k`` is
``‖W_k[S, :]‖_F² / k``. The magnitude mask (the ``k`` largest ``|θᵢ|``) is the product's subject;
the others are its baselines and rivals:

- ``random``: the mean of ``overlap.random_masks`` uniformly random k-subsets, and the exact
  mean (``k/D``, chance) and standard deviation of one such mask;
- ``best``: for every k the k rows of largest norm of ``W_k``, the largest overlap any k-subset
  can have (an upper bound for every mask);
- ``gradient``: the k largest ``|∂L/∂θᵢ|`` of the mean loss over the Hessian set at the step;
- ``ggn-diagonal``: the k largest entries of the GGN's diagonal over the Hessian set (exact,
  from per-point Jacobians: about ``C`` backward passes per point, so off by default).

A mask is a function of a :class:`MaskContext` registered with :func:`register_mask`; it
returns a :class:`MaskCurves`: the curve over k = 1..K and the interval that contains the true
curve given the certificate's bounds on the top-k spaces. The overlap table gets one column per
mask (``<name>_mask_overlap`` with ``_low`` and ``_high``), so a new mask is one registered,
tested function; no rule or script changes for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import torch
from torch import Tensor

from hessketch.metrics import magnitude_order, mask_overlap_curve

__all__ = [
    "MASKS",
    "MaskContext",
    "MaskCurves",
    "best_mask_curve",
    "mask_problems",
    "random_mask_moments",
    "register_mask",
]

# Rows per block when a mask streams over all D rows of the eigenvectors: a float64 block of K
# columns stays under this many bytes.
BLOCK_BYTES = 128 * 2**20


@dataclass
class MaskContext:
    """What a mask may use at one step; expensive parts are computed on first use.

    Args:
        theta: the flat parameters at the step.
        kmax: the number of eigenpairs K (curves have K entries).
        rows: ``rows(idx)``: the rows ``idx`` of the eigenvectors, ``(len(idx), K)`` float64.
        row_blocks: iterates over all rows in order, blocks of ``(b, K)`` float64.
        interval: ``interval(curve)``: the low and high curves that contain the true overlap
            of a fixed mask whose computed overlap is ``curve`` (from the certificate).
        seed: seed of the random masks.
        random_masks: how many random masks.
        gradient: the gradient of the mean loss over the Hessian set at the step (a callable,
            called at most once).
        ggn_diagonal: the diagonal of the GGN over the Hessian set (a callable, at most once).
    """

    theta: Tensor
    kmax: int
    rows: Callable[[Tensor], Tensor]
    row_blocks: Callable[[], Iterator[Tensor]]
    interval: Callable[[Tensor], tuple[Tensor, Tensor]]
    seed: int = 0
    random_masks: int = 10
    gradient_fn: Callable[[], Tensor] | None = None
    ggn_diagonal_fn: Callable[[], Tensor] | None = None

    @property
    def dim(self) -> int:
        """``D``."""
        return self.theta.numel()

    @cached_property
    def gradient(self) -> Tensor:
        """``∇L(θ)`` over the Hessian set (raises if the context has none)."""
        if self.gradient_fn is None:
            raise ValueError("this mask needs the loss gradient, which the context lacks")
        return self.gradient_fn()

    @cached_property
    def ggn_diagonal(self) -> Tensor:
        """``diag G(θ)`` over the Hessian set (raises if the context has none)."""
        if self.ggn_diagonal_fn is None:
            raise ValueError("this mask needs the GGN diagonal, which the context lacks")
        return self.ggn_diagonal_fn()

    def fixed_order(self, order: Tensor) -> MaskCurves:
        """The curve and interval of the nested masks ``order[:k]`` (one order for every k)."""
        top = order[: self.kmax]
        curve = mask_overlap_curve(self.rows(top), torch.arange(self.kmax))
        low, high = self.interval(curve)
        return MaskCurves(curve, low, high)


@dataclass(frozen=True)
class MaskCurves:
    """A mask's overlap for k = 1..K, its interval, and extra columns (e.g. a spread)."""

    overlap: Tensor
    low: Tensor
    high: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)


MaskFunction = Callable[[MaskContext], MaskCurves]
_REGISTRY: dict[str, MaskFunction] = {}
MASKS: Mapping[str, MaskFunction] = MappingProxyType(_REGISTRY)
"""Registered masks by name (read-only view; add with :func:`register_mask`)."""


def register_mask(name: str) -> Callable[[MaskFunction], MaskFunction]:
    """Decorator that registers ``fn(context) -> MaskCurves`` under ``name``.

    The name becomes the overlap table's columns ``<name>_mask_overlap`` (``-`` as ``_``),
    ``_low`` and ``_high``, and a value of ``overlap.masks``.

    Raises:
        ValueError: if ``name`` is empty, not a str, already registered, or ``magnitude``
            (the table's own ``overlap`` columns).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a mask needs a non-empty str name, got {name!r}")
    if name == "magnitude":
        raise ValueError("the magnitude mask is the overlap table's subject, always computed")

    def decorate(fn: MaskFunction) -> MaskFunction:
        if name in _REGISTRY:
            raise ValueError(f"mask {name!r} is already registered to {_REGISTRY[name]}")
        _REGISTRY[name] = fn
        return fn

    return decorate


def mask_problems(names: object) -> list[str]:
    """What is wrong with ``overlap.masks`` (empty when every name is registered, once)."""
    if not isinstance(names, list):
        return [f"overlap.masks: expected a list of mask names, got {names!r}"]
    problems = [
        f"overlap.masks: unknown mask {name!r}; registered: {sorted(_REGISTRY)} (the magnitude "
        "mask is always computed; a new one is a function decorated with "
        "hessketch.masks.register_mask)"
        for name in names
        if name not in _REGISTRY
    ]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"overlap.masks: {repeated} listed more than once")
    return problems


def column(name: str) -> str:
    """The overlap table's column of mask ``name``."""
    return f"{name.replace('-', '_')}_mask_overlap"


# ------------------------------------------------------------------------------ the masks
@register_mask("random")
def random_masks(context: MaskContext) -> MaskCurves:
    """Uniformly random nested k-subsets: the draws' mean, the exact spread of one mask.

    Each draw is a random permutation; its first k entries are the k-mask. The interval is the
    mean of the draws' intervals (each holds, so their mean holds for the mean). The spread is
    not estimated from the draws (the row norms of eigenvectors are heavy-tailed, so a sample
    of 10 underestimates it): with ``rᵢ = ‖W_k[i, :]‖²``, the overlap of a uniform k-subset is
    ``1/k Σ_{i∈S} rᵢ``, of mean ``Σrᵢ/D`` (= k/D) and variance ``σ_r² (D − k) / (k (D − 1))``
    (sampling without replacement, ``σ_r²`` the variance of the ``rᵢ`` over all D rows), computed
    in one pass over the rows. ``random_mask_sem`` is that standard deviation over
    ``√random_masks``: the standard error of the draws' mean.
    """
    if context.random_masks < 1:
        raise ValueError(f"random_masks must be >= 1, got {context.random_masks}")
    gen = torch.Generator().manual_seed(context.seed)
    curves, lows, highs = [], [], []
    for _ in range(context.random_masks):
        draw = context.fixed_order(torch.randperm(context.dim, generator=gen))
        curves.append(draw.overlap)
        lows.append(draw.low)
        highs.append(draw.high)
    mean, spread = random_mask_moments(context.row_blocks(), context.kmax, context.dim)
    return MaskCurves(
        torch.stack(curves).mean(dim=0),
        torch.stack(lows).mean(dim=0),
        torch.stack(highs).mean(dim=0),
        {
            "random_mask_expected": mean,
            "random_mask_std": spread,
            "random_mask_sem": spread / math.sqrt(context.random_masks),
        },
    )


def random_mask_moments(row_blocks: Iterator[Tensor], kmax: int, dim: int) -> tuple[Tensor, Tensor]:
    """Exact mean and standard deviation of the overlap of a uniform random k-subset, k = 1..K.

    One pass over the rows accumulates ``Σrᵢ`` and ``Σrᵢ²`` of the row norms ``rᵢ = ‖W_k[i, :]‖²``
    for every k; see :func:`random_masks`.
    """
    total = torch.zeros(kmax, dtype=torch.float64)
    squares = torch.zeros(kmax, dtype=torch.float64)
    for block in row_blocks:
        norms = torch.cumsum(block[:, :kmax].to(torch.float64) ** 2, dim=1)
        total += norms.sum(dim=0)
        squares += (norms**2).sum(dim=0)
    k = torch.arange(1, kmax + 1, dtype=torch.float64)
    mean_r = total / dim
    variance_r = (squares / dim - mean_r**2).clamp_min(0)
    fpc = (dim - k) / max(dim - 1, 1)  # without replacement
    return mean_r, (variance_r * fpc / k).sqrt()


def best_mask_curve(row_blocks: Iterator[Tensor], kmax: int) -> Tensor:
    """For k = 1..K, the largest ``‖W_k[S, :]‖_F² / k`` over all k-subsets ``S``.

    That is the sum of the k largest squared row norms of ``W_k``, divided by k; it streams over
    row blocks keeping, for every k, the k largest row norms seen so far.
    """
    best: list[Tensor] = [torch.empty(0, dtype=torch.float64) for _ in range(kmax)]
    for block in row_blocks:
        norms = torch.cumsum(block[:, :kmax].to(torch.float64) ** 2, dim=1)  # (b, K)
        for k in range(1, kmax + 1):
            pool = torch.cat([best[k - 1], norms[:, k - 1]])
            best[k - 1] = torch.topk(pool, min(k, pool.numel()), sorted=False).values
    return torch.stack([b.sum() for b in best]) / torch.arange(1, kmax + 1, dtype=torch.float64)


@register_mask("best")
def best_mask(context: MaskContext) -> MaskCurves:
    """The best k-subset for every k: an upper bound for any mask's overlap.

    The interval holds too: ``√(k·ov)`` of each subset moves by at most the space bound, so the
    maximum over subsets does.
    """
    curve = best_mask_curve(context.row_blocks(), context.kmax)
    low, high = context.interval(curve)
    return MaskCurves(curve, low, high)


@register_mask("gradient")
def gradient_mask(context: MaskContext) -> MaskCurves:
    """The k largest ``|∂L/∂θᵢ|`` over the Hessian set at the step (ties: lower index)."""
    return context.fixed_order(magnitude_order(context.gradient))


@register_mask("ggn-diagonal")
def ggn_diagonal_mask(context: MaskContext) -> MaskCurves:
    """The k largest entries of ``diag G`` over the Hessian set (ties: lower index)."""
    return context.fixed_order(magnitude_order(context.ggn_diagonal))


def block_rows(kmax: int) -> int:
    """Rows per block when streaming all rows of ``K`` float64 columns."""
    return max(1, BLOCK_BYTES // (8 * max(kmax, 1)))
