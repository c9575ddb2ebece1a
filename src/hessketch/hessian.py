"""The registered curvatures: the Hessian, the generalized Gauss–Newton, the empirical Fisher.

Each is a :class:`~hessketch.curvature.CurvatureOperator` that fills in only the product over
one mini-batch; batching, timing and the determinism checks are the base class's. For the mean
cross-entropy ``L(θ) = 1/n Σᵢ ℓ(f(xᵢ; θ), yᵢ)`` with logits ``f`` and softmax ``p``:

- ``hessian``: ``∇²L``, by a Hessian-vector product (``jvp`` of ``grad``, or a batched double
  backward);
- ``ggn``: ``1/n Σᵢ Jᵢᵀ (diag pᵢ − pᵢpᵢᵀ) Jᵢ`` with ``Jᵢ`` the Jacobian of the logits (the Hessian
  without the logits' second derivatives; positive semi-definite): a ``jvp`` of the logits, the
  loss Hessian in logit space, a ``vjp``;
- ``empirical-fisher``: ``1/n Σᵢ gᵢgᵢᵀ`` with ``gᵢ = ∇ℓᵢ`` the per-point gradients (positive
  semi-definite): a ``jvp`` of the per-point losses and a ``vjp``, never forming the gᵢ.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.func import grad, jacrev, jvp, vjp, vmap

from hessketch.curvature import (
    CurvatureOperator,
    dense_matrix,
    determinism_settings,
    deterministic_mode,
    register_curvature,
)

__all__ = [
    "HVP_METHODS",
    "EmpiricalFisherOperator",
    "GGNOperator",
    "HessianOperator",
    "dense_matrix",
    "determinism_settings",
    "deterministic_mode",
    "ggn_diagonal",
]

HVPMethod = Literal["forward-over-reverse", "reverse-over-reverse"]
HVP_METHODS: tuple[str, ...] = ("forward-over-reverse", "reverse-over-reverse")


@register_curvature("hessian")
class HessianOperator(CurvatureOperator):
    """``H @ V`` for the Hessian of the mean cross-entropy of ``model`` at ``params``.

    ``method``: ``"forward-over-reverse"`` (``jvp`` of ``grad`` under ``vmap``) or
    ``"reverse-over-reverse"`` (one gradient graph per batch, reused for the whole block by a
    batched double backward); see ``benchmarks/bench_hvp.py``. The other arguments are those of
    :class:`~hessketch.curvature.CurvatureOperator`.
    """

    methods = HVP_METHODS
    product_name = "Hessian-vector"

    def _batch_product(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
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


@register_curvature("ggn")
class GGNOperator(CurvatureOperator):
    """``G @ V`` for the generalized Gauss–Newton matrix of the mean cross-entropy.

    Per batch: the logits' ``vjp`` is set up once, then for every column a ``jvp`` of the
    logits (``J v``, one forward-mode pass), the cross-entropy's Hessian in logit space
    (``diag p − ppᵀ``, applied as ``p ⊙ u − p (pᵀu)``) and the ``vjp`` (``Jᵀ ·``). Positive
    semi-definite by construction. The arguments are those of
    :class:`~hessketch.curvature.CurvatureOperator`.
    """

    psd = True
    product_name = "GGN-vector"

    def _batch_product(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def logits(flat: torch.Tensor) -> torch.Tensor:
            return self._logits(flat, x)

        out, pullback = vjp(logits, self.params)
        p = torch.softmax(out, dim=-1)
        scale = 1.0 / x.shape[0]  # the mean over the batch

        def ggn_one(col: torch.Tensor) -> torch.Tensor:
            jv = jvp(logits, (self.params,), (col,))[1]
            hjv = p * jv - p * (p * jv).sum(dim=-1, keepdim=True)
            return pullback(hjv * scale)[0]

        return vmap(ggn_one, in_dims=1, out_dims=1, randomness="different")(v)


@register_curvature("empirical-fisher")
class EmpiricalFisherOperator(CurvatureOperator):
    """``F @ V`` for the empirical Fisher ``1/n Σᵢ gᵢgᵢᵀ`` of the mean cross-entropy.

    Per batch: ``(gᵢᵀ v)ᵢ`` is a ``jvp`` of the vector of per-point losses, and
    ``Σᵢ gᵢ (gᵢᵀ v) / n`` the ``vjp`` of that vector; the per-point gradients are never formed.
    Positive semi-definite by construction (and not the Hessian, even at a minimum: see
    Kunstner et al., 2019). The arguments are those of
    :class:`~hessketch.curvature.CurvatureOperator`.
    """

    psd = True
    product_name = "Fisher-vector"

    def _batch_product(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def losses(flat: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(self._logits(flat, x), y, reduction="none")

        _, pullback = vjp(losses, self.params)
        scale = 1.0 / x.shape[0]

        def fisher_one(col: torch.Tensor) -> torch.Tensor:
            gv = jvp(losses, (self.params,), (col,))[1]
            return pullback(gv * scale)[0]

        return vmap(fisher_one, in_dims=1, out_dims=1, randomness="different")(v)


# Per-point Jacobians are computed this many bytes at a time (``points × C × D`` entries).
JACOBIAN_BYTES = 256 * 2**20


def ggn_diagonal(op: CurvatureOperator) -> torch.Tensor:
    """The diagonal of the GGN of the mean cross-entropy over ``op``'s points, exactly.

    ``diag G = 1/n Σᵢ Σ_c ((diag pᵢ − pᵢpᵢᵀ)^½ Jᵢ)²_c``: per-point Jacobians of the logits (one
    backward pass per class and point, under ``vmap``), a few points at a time so that at most
    :data:`JACOBIAN_BYTES` of Jacobian is held. Any curvature operator supplies the network,
    the parameters and the points.
    """
    out = torch.zeros(op.dim, dtype=torch.float64, device=op.device)

    def logits_one(flat: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return op._logits(flat, xi.unsqueeze(0)).squeeze(0)

    per_point = vmap(jacrev(logits_one), in_dims=(None, 0))
    with torch.no_grad():
        for x, _y, _weight in op._batches:
            classes = op._logits(op.params, x[:1]).shape[-1]
            chunk = max(1, JACOBIAN_BYTES // (classes * op.dim * x.element_size()))
            for start in range(0, x.shape[0], chunk):
                xs = x[start : start + chunk]
                jac = per_point(op.params, xs).to(torch.float64)  # (b, C, D)
                p = torch.softmax(op._logits(op.params, xs).to(torch.float64), dim=-1)
                w, u = torch.linalg.eigh(torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
                root = u @ torch.diag_embed(w.clamp_min(0).sqrt()) @ u.transpose(1, 2)
                out += (torch.einsum("bce,bed->bcd", root, jac) ** 2).sum(dim=(0, 1))
    return (out / op.num_points).cpu()
