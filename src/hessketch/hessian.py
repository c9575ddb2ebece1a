"""The Hessian of the mean cross-entropy loss as a linear operator on blocks of vectors.

``H`` is only ever touched through products ``H @ V`` with a block ``V`` of shape ``(D, b)``.
The Hessian set is processed in mini-batches; each batch's Hessian is weighted by its share of
the points, so the operator is exactly the Hessian of the mean loss over the whole set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from hessketch.errors import NonDeterminismError
from hessketch.models import unflatten_params

__all__ = ["HVP_METHODS", "HessianOperator", "dense_matrix"]

log = logging.getLogger(__name__)

HVPMethod = Literal["forward-over-reverse", "reverse-over-reverse"]
HVP_METHODS: tuple[str, ...] = ("forward-over-reverse", "reverse-over-reverse")

# Relative disagreement tolerated between two applications to the same vector. Deterministic
# kernels agree bit for bit; GPU reductions may differ in the last bits. Dropout or a
# training-mode BatchNorm changes results by O(1).
_DETERMINISM_RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}


class HessianOperator:
    """``H @ V`` for the Hessian of the mean cross-entropy of ``model`` at ``params``.

    Args:
        model: the network; it is put in eval mode (BatchNorm uses running statistics,
            no dropout). Its parameters are not modified.
        params: the flat parameter vector at which the Hessian is taken.
        inputs: the Hessian set's inputs, first dimension indexing points.
        targets: class labels (int64) of the Hessian set.
        batch_size: points per mini-batch; the last batch may be smaller and is weighted by
            its size.
        dtype: dtype of the computation (``torch.float32`` by default, ``torch.float64`` for
            reference computations).
        device: where to compute (defaults to the CPU).
        method: ``"forward-over-reverse"`` (``jvp`` of ``grad`` under ``vmap``) or
            ``"reverse-over-reverse"`` (one gradient graph per batch, reused for the whole
            block by a batched double backward). See ``benchmarks/bench_hvp.py``.
        max_block: at most this many vectors go through the network at once (memory bound).
        check_determinism: apply the operator twice to one random vector at construction and
            raise :class:`NonDeterminismError` if the results disagree.
    """

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
        method: HVPMethod = "forward-over-reverse",
        max_block: int = 256,
        check_determinism: bool = True,
    ) -> None:
        if method not in HVP_METHODS:
            raise ValueError(f"unknown HVP method {method!r}; expected one of {HVP_METHODS}")
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
        if check_determinism:
            self.check_determinism()

    @property
    def shape(self) -> tuple[int, int]:
        """``(D, D)``."""
        return (self.dim, self.dim)

    def _loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.model, unflatten_params(self.model, flat), (x,))
        return nn.functional.cross_entropy(logits, y)

    def _batch_hvp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H_batch @ v`` for ``v`` of shape ``(D, b)``."""
        if self.method == "forward-over-reverse":

            def grad_fn(flat: torch.Tensor) -> torch.Tensor:
                return grad(self._loss)(flat, x, y)

            def hvp_one(col: torch.Tensor) -> torch.Tensor:
                return jvp(grad_fn, (self.params,), (col,))[1]

            # randomness="different": a random layer then yields random products, which the
            # determinism check reports, instead of an opaque vmap error.
            return vmap(hvp_one, in_dims=1, out_dims=1, randomness="different")(v)
        flat = self.params.detach().requires_grad_(True)
        with torch.enable_grad():
            g = torch.autograd.grad(self._loss(flat, x, y), flat, create_graph=True)[0]
            (hv,) = torch.autograd.grad(g, flat, grad_outputs=v.T, is_grads_batched=True)
        return hv.T

    @torch.no_grad()
    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a block ``v`` of shape ``(D, b)`` (or a vector of shape ``(D,)``)."""
        vector = v.ndim == 1
        block = v.reshape(self.dim, -1).to(device=self.device, dtype=self.dtype)
        start = time.perf_counter()
        out = torch.zeros_like(block)
        for j in range(0, block.shape[1], self.max_block):
            cols = block[:, j : j + self.max_block]
            for x, y, weight in self._batches:
                out[:, j : j + self.max_block] += weight * self._batch_hvp(x, y, cols)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        self.num_products += block.shape[1]
        return out.reshape(self.dim) if vector else out

    __matmul__ = matmat

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`matmat`."""
        return self.matmat(v)

    def loss(self) -> float:
        """The mean cross-entropy over the Hessian set at ``params``."""
        with torch.no_grad():
            return float(sum(w * self._loss(self.params, x, y) for x, y, w in self._batches))

    def check_determinism(self, seed: int = 0) -> None:
        """Apply the operator twice to one random vector; raise if the results disagree.

        Raises:
            NonDeterminismError: with the relative difference found and the tolerance.
        """
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(self.dim, 1, generator=gen, dtype=torch.float64).to(self.dtype)
        count, seconds = self.num_products, self.seconds
        a, b = self.matmat(v), self.matmat(v)
        self.num_products, self.seconds = count, seconds
        rtol = _DETERMINISM_RTOL.get(self.dtype, 1e-4)
        diff = float((a - b).norm() / a.norm().clamp_min(torch.finfo(self.dtype).tiny))
        if not diff <= rtol:
            raise NonDeterminismError(
                f"two Hessian-vector products with the same vector differ by {diff:.3g} "
                f"(relative; tolerance {rtol:g}). The model or data pipeline is not "
                "deterministic in eval mode (dropout, a training-mode layer, or random "
                "augmentation?); refusing to measure it."
            )


def dense_matrix(
    op: HessianOperator | torch.Tensor, *, block: int = 512, log_every: float = 30.0
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
            log.info("dense Hessian: %d / %d columns", stop, dim)
            last = time.perf_counter()
    return (out + out.T) / 2
