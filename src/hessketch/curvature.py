"""Curvature matrices of the mean cross-entropy loss as linear operators on blocks of vectors.

A curvature ``C`` (the Hessian, the generalized Gauss–Newton, the empirical Fisher) is only
ever touched through products ``C @ V`` with a block ``V`` of shape ``(D, b)``. The base class
:class:`CurvatureOperator` owns what every curvature needs: the set of points in mini-batches
(each batch weighted by its share of the points, so the operator is exactly the curvature of
the mean loss over the whole set), the block loop, the count and time of products, and the
determinism checks. A subclass implements one method, ``_batch_product(x, y, v)``: the
curvature of the mean loss over one batch times ``v``. It is registered under a name with
:func:`register_curvature` and then reachable from configs (``hessian.curvature``) through
:func:`make_curvature`; no rule or script changes for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.func import functional_call

from hessketch.errors import NonDeterminismError
from hessketch.models import unflatten_params

__all__ = [
    "CURVATURES",
    "CurvatureOperator",
    "dense_matrix",
    "determinism_settings",
    "deterministic_mode",
    "make_curvature",
    "register_curvature",
]

log = logging.getLogger(__name__)

# Products with the check vector are repeated after every this many product calls (one
# product each, not counted in ``num_products``: about 0.2 % more work at blocks of 64).
RECHECK_EVERY = 8


class CurvatureOperator:
    """``C @ V`` for a curvature ``C`` of the mean cross-entropy of ``model`` at ``params``.

    Subclasses implement :meth:`_batch_product` and set the class attributes ``methods`` (the
    formulations they offer, the first one the default), ``psd`` (whether the matrix is
    positive semi-definite by construction) and ``product_name`` (for messages).

    Args:
        model: the network; it is put in eval mode (BatchNorm uses running statistics,
            no dropout). Its parameters are not modified.
        params: the flat parameter vector at which the curvature is taken.
        inputs: the set's inputs, first dimension indexing points.
        targets: class labels (int64) of the set.
        batch_size: points per mini-batch; the last batch may be smaller and is weighted by
            its size.
        dtype: dtype of the computation (``torch.float32`` by default, ``torch.float64`` for
            reference computations).
        device: where to compute (defaults to the CPU).
        method: the formulation of the product, one of the class's ``methods`` (None: the
            first).
        max_block: at most this many vectors go through the network at once (memory bound).
        check_determinism: apply the operator twice to one random vector at construction and
            raise :class:`NonDeterminismError` unless the results agree bit for bit; then
            repeat that product after every ``recheck_every`` calls of :meth:`matmat` and
            raise if it changed (a model, data pipeline or device that turns random later).
            Deterministic kernels (the CPU; CUDA with :func:`deterministic_mode`) agree bit for
            bit, so no tolerance hides small noise.
        recheck_every: see ``check_determinism``; 0 checks only at construction.

    Raises:
        ValueError: for an unknown method, inputs and targets of different lengths (or none),
            or a batch size or block below 1.
    """

    name: ClassVar[str] = ""
    methods: ClassVar[tuple[str, ...]] = ("forward-over-reverse",)
    psd: ClassVar[bool] = False
    product_name: ClassVar[str] = "curvature-vector"

    def __init__(
        self,
        model: nn.Module,
        params: torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int = 1000,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        method: str | None = None,
        max_block: int = 256,
        check_determinism: bool = True,
        recheck_every: int = RECHECK_EVERY,
    ) -> None:
        method = self.methods[0] if method is None else method
        if method not in self.methods:
            raise ValueError(
                f"unknown {self.name or type(self).__name__} product method {method!r}; "
                f"expected one of {self.methods}"
            )
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(
                f"inputs and targets must hold the same, non-zero number of points; "
                f"got {inputs.shape[0]} and {targets.shape[0]}"
            )
        if batch_size < 1 or max_block < 1:
            raise ValueError(
                f"batch_size and max_block must be >= 1, got {batch_size}, {max_block}"
            )
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.method = method
        self.max_block = max_block
        self.batch_size = batch_size
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.params = params.detach().to(device=self.device, dtype=dtype)
        self.dim = self.params.numel()
        n = inputs.shape[0]
        self.num_points = n
        self._batches = [
            (
                inputs[i : i + batch_size].to(device=self.device, dtype=dtype),
                targets[i : i + batch_size].to(device=self.device),
                min(batch_size, n - i) / n,
            )
            for i in range(0, n, batch_size)
        ]
        self.num_products = 0
        self.seconds = 0.0
        self.recheck_every = recheck_every
        self.rechecks = 0  # repeated determinism checks passed
        self._calls = 0
        self._sentinel: tuple[torch.Tensor, torch.Tensor] | None = None
        if check_determinism:
            self.check_determinism()

    # ------------------------------------------------------------------ what subclasses fill in
    def _batch_product(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The curvature of the mean loss over the batch ``(x, y)`` times ``v`` ``(D, b)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared by all
    @property
    def shape(self) -> tuple[int, int]:
        """``(D, D)``."""
        return (self.dim, self.dim)

    def _logits(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, unflatten_params(self.model, flat), (x,))

    def _loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self._logits(flat, x), y)

    @torch.no_grad()
    def _apply(self, block: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(block)
        for j in range(0, block.shape[1], self.max_block):
            cols = block[:, j : j + self.max_block]
            for x, y, weight in self._batches:
                out[:, j : j + self.max_block] += weight * self._batch_product(x, y, cols)
        return out

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``C @ v`` for a block ``v`` of shape ``(D, b)`` (or a vector of shape ``(D,)``).

        Raises:
            NonDeterminismError: if a repeated determinism check fails (see the class doc).
        """
        vector = v.ndim == 1
        block = v.reshape(self.dim, -1).to(device=self.device, dtype=self.dtype)
        start = time.perf_counter()
        out = self._apply(block)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        self.num_products += block.shape[1]
        self._calls += 1
        if (
            self._sentinel is not None
            and self.recheck_every
            and self._calls % self.recheck_every == 0
        ):
            self._recheck()
        return out.reshape(self.dim) if vector else out

    __matmul__ = matmat

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`matmat`."""
        return self.matmat(v)

    def loss(self) -> float:
        """The mean cross-entropy over the set at ``params``."""
        with torch.no_grad():
            return float(sum(w * self._loss(self.params, x, y) for x, y, w in self._batches))

    def gradient(self) -> torch.Tensor:
        """``∇L(θ)`` of the mean cross-entropy over the set (``(D,)``, this operator's dtype)."""
        out = torch.zeros_like(self.params)
        for x, y, weight in self._batches:
            flat = self.params.detach().requires_grad_(True)
            with torch.enable_grad():
                out += weight * torch.autograd.grad(self._loss(flat, x, y), flat)[0]
        return out

    def check_determinism(self, seed: int = 0) -> None:
        """Apply the operator twice to one random vector; raise unless they agree bit for bit.

        The vector and its product are kept for the repeated checks of :meth:`matmat`.

        Raises:
            NonDeterminismError: with the relative difference found.
        """
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(self.dim, 1, generator=gen, dtype=torch.float64)
        v = v.to(device=self.device, dtype=self.dtype)
        a, b = self._apply(v), self._apply(v)
        if not torch.equal(a, b):
            raise NonDeterminismError(
                f"two {self.product_name} products with the same vector differ by "
                f"{_relative_difference(a, b):.3g} (relative; deterministic kernels agree bit "
                "for bit). The model or data pipeline is not deterministic in eval mode "
                "(dropout, a training-mode layer, random augmentation, or on a GPU TF32 and "
                "non-deterministic algorithms: see hessketch.deterministic_mode); refusing to "
                "measure it."
            )
        self._sentinel = (v, a)

    def _recheck(self) -> None:
        assert self._sentinel is not None
        v, expected = self._sentinel
        again = self._apply(v)
        if not torch.equal(again, expected):
            raise NonDeterminismError(
                f"after {self.num_products} {self.product_name} products, the product with the "
                f"determinism check vector changed by {_relative_difference(again, expected):.3g} "
                "(relative) from its value at construction, where two applications agreed bit "
                "for bit: the model, the data or the device turned non-deterministic; refusing "
                "to go on measuring"
            )
        self.rechecks += 1


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = a.norm().clamp_min(torch.finfo(a.dtype).tiny)
    return float(((a - b).norm() / scale).nan_to_num(float("inf")))


# ---------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[CurvatureOperator]] = {}
CURVATURES: Mapping[str, type[CurvatureOperator]] = MappingProxyType(_REGISTRY)
"""Registered curvatures by name (read-only view; add with :func:`register_curvature`)."""

_Kind = TypeVar("_Kind", bound=type[CurvatureOperator])


def register_curvature(name: str) -> Callable[[_Kind], _Kind]:
    """Class decorator that registers a :class:`CurvatureOperator` subclass under ``name``.

    Args:
        name: the curvature's name, as used in ``hessian.curvature`` and
            :func:`make_curvature`.

    Returns:
        The decorator; it sets ``cls.name = name`` and returns the class unchanged otherwise.

    Raises:
        ValueError: if ``name`` is not a non-empty str or is already registered, or the class
            is not a CurvatureOperator subclass with at least one method.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a curvature needs a non-empty str name, got {name!r}")

    def decorate(cls: _Kind) -> _Kind:
        if not (isinstance(cls, type) and issubclass(cls, CurvatureOperator)):
            raise ValueError(f"can only register CurvatureOperator subclasses, got {cls!r}")
        if not cls.methods:
            raise ValueError(f"curvature {name!r}: {cls.__name__}.methods is empty")
        if name in _REGISTRY:
            raise ValueError(f"curvature {name!r} is already registered to {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def curvature_problems(name: object, method: object = None) -> list[str]:
    """What is wrong with a curvature name and product method (empty when both are fine).

    Each problem names the config key (``hessian.curvature``, ``hessian.method``) and the
    choices, so a config check can report it before any job runs.
    """
    if name not in _REGISTRY:
        return [
            f"hessian.curvature: unknown curvature {name!r}; registered: {sorted(_REGISTRY)} "
            "(a new one is a CurvatureOperator subclass decorated with "
            "hessketch.curvature.register_curvature)"
        ]
    cls = _REGISTRY[name]  # type: ignore[index]
    if method is not None and method not in cls.methods:
        return [
            f"hessian.method: {method!r} is not a product method of the curvature {name!r}; "
            f"it has {list(cls.methods)}"
        ]
    return []


def make_curvature(
    name: str,
    model: nn.Module,
    params: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    **options: Any,
) -> CurvatureOperator:
    """The registered curvature ``name`` of ``model`` at ``params`` over ``(inputs, targets)``.

    ``options`` are those of :class:`CurvatureOperator` (``batch_size``, ``dtype``, ``device``,
    ``method``, …).

    Raises:
        ValueError: for an unknown name or method, naming the registered ones.
    """
    problems = curvature_problems(name, options.get("method"))
    if problems:
        raise ValueError(problems[0])
    return _REGISTRY[name](model, params, inputs, targets, **options)


# ---------------------------------------------------------------------------------- utilities
def deterministic_mode() -> dict[str, object]:
    """Pin what bit-identical reruns of a product need on a GPU; return the settings.

    TF32 off for matrix products and cuDNN convolutions (float32 matmul precision "highest"),
    cuDNN autotuning off, deterministic algorithms on (``warn_only``: an operation without a
    deterministic kernel warns in the log instead of failing the job; the repeated determinism
    checks of :class:`CurvatureOperator` still catch products that change), and the cuBLAS
    workspace setting those need. Harmless on the CPU. Call it before the first CUDA operation.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    return determinism_settings()


def determinism_settings() -> dict[str, object]:
    """The settings that decide whether products are bit-identical (for receipts)."""
    return {
        "cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def dense_matrix(
    op: CurvatureOperator | torch.Tensor, *, block: int = 512, log_every: float = 30.0
) -> torch.Tensor:
    """Materialize an operator as a dense ``(D, D)`` matrix, ``block`` columns at a time.

    Used for exact references on small networks (float64 operators); the result is
    symmetrized, removing only rounding-level asymmetry.
    """
    if isinstance(op, torch.Tensor):
        return op
    dim = op.dim
    out = torch.empty(dim, dim, dtype=op.dtype)
    eye_cols: Sequence[int] = range(0, dim, block)
    last = time.perf_counter()
    for i, start in enumerate(eye_cols):
        stop = min(start + block, dim)
        basis = torch.zeros(dim, stop - start, dtype=op.dtype)
        basis[torch.arange(start, stop), torch.arange(stop - start)] = 1
        out[:, start:stop] = op.matmat(basis).cpu()
        if time.perf_counter() - last > log_every or i == len(eye_cols) - 1:
            log.info("dense %s: %d / %d columns", op.name or "matrix", stop, dim)
            last = time.perf_counter()
    return (out + out.T) / 2
