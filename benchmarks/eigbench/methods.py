"""The eigensolvers compared, each split into an untimed setup and a timed run.

A method is a function ``(problem, flat, config) -> Prepared``: the setup (operator
construction, determinism checks, imports) happens inside it; ``Prepared.run`` is what the
benchmark times; ``Prepared.hvps`` reads the count of Hessian-vector products the run spent
(from ``HessianOperator.num_products`` where the method uses our operator, else from a
counter wrapped around the peer's own product); ``Prepared.check`` runs after the timer
(e.g. true residuals of a reference) and may spend further, uncounted products.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import hessketch
from eigbench.problems import Problem, hessian_operator, hessian_set
from hessketch.hessian import HessianOperator, dense_matrix
from hessketch.models import build_model, load_flat_params


class Unavailable(Exception):
    """The method cannot run in this checkout or environment (the message says why)."""


@dataclass
class Outcome:
    """Eigenpairs as a method returned them, plus what it reports about itself."""

    values: torch.Tensor  # (m,)
    vectors: torch.Tensor  # (D, m), columns matching values
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """A method ready to run: the timed call, its HVP count, an untimed check afterwards."""

    run: Callable[[], Outcome]
    hvps: Callable[[], int]
    check: Callable[[Outcome], dict[str, Any]] = lambda outcome: {}


def _op_prepared(op: HessianOperator, run: Callable[[], Outcome]) -> Prepared:
    def start_and_run() -> Outcome:
        op.num_products = 0
        return run()

    return Prepared(start_and_run, lambda: op.num_products)


def exact(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """Dense float64 Hessian from D products with the unit vectors, then ``eigh``."""
    op = hessian_operator(problem, flat, torch.float64)
    keep = config["keep"]

    def run() -> Outcome:
        values, vectors = torch.linalg.eigh(dense_matrix(op))
        order = torch.argsort(values.abs(), descending=True, stable=True)[:keep]
        return Outcome(values[order], vectors[:, order].contiguous())

    return _op_prepared(op, run)


def _decompose_available() -> bool:
    return hasattr(hessketch, "decompose")


def _seigh_has_passes() -> bool:
    return "passes" in inspect.signature(hessketch.seigh).parameters


def _certificate_info(dec: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"hvps_reported": dict(getattr(dec, "hvps", {}) or {})}
    cert = getattr(dec, "certificate", None)
    if cert is not None:
        info["verdict"] = str(cert.verdict)
        info["trusted_k"] = int(cert.trusted_k)
        errors = torch.as_tensor(cert.backward_errors)
        info["certified_of"] = int(errors.numel())
        if errors.numel():
            info["max_backward_error"] = float(errors.max())
            info["median_backward_error"] = float(errors.median())
    return info


def hessketch_method(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """``hessketch.decompose`` where this checkout has it (with its certificate), else ``seigh``.

    ``config``: ``k``, ``s``, ``passes``, ``test_matrix``, ``seed``, ``certify`` and, for
    ``passes > 1``, optionally ``width`` (HVPs per wave; default ``s``).
    """
    passes = config["passes"]
    if passes > 1 and not (_decompose_available() or _seigh_has_passes()):
        raise Unavailable(
            "this checkout has neither hessketch.decompose nor seigh(passes=...): "
            "no iterative hessketch yet"
        )
    op = hessian_operator(problem, flat)
    k, s, seed, kind = config["k"], config["s"], config["seed"], config["test_matrix"]

    def run() -> Outcome:
        if _decompose_available():
            dec = hessketch.decompose(
                op,
                op.dim,
                k,
                s,
                passes=passes,
                seed=seed,
                test_matrix=kind,
                certify=config["certify"],
                **({"width": config["width"]} if config.get("width") else {}),
            )
            return Outcome(dec.eigenvalues, dec.eigenvectors, _certificate_info(dec))
        extra = {"passes": passes} if passes > 1 else {}
        values, vectors = hessketch.seigh(op, op.dim, k, s, seed=seed, test_matrix=kind, **extra)
        return Outcome(values, vectors)

    return _op_prepared(op, run)


def skerch_method(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """skerch 1.2 ``seigh`` on our operator (it needs ``.shape`` and ``@`` only).

    Its default recovery (``hmt``) takes two passes: ``outer`` products for the range, then
    ``outer`` more for ``QᵀHQ``.
    """
    from skerch.algorithms import seigh as skerch_seigh

    op = hessian_operator(problem, flat)

    def run() -> Outcome:
        values, vectors = skerch_seigh(
            op,
            "cpu",
            torch.float32,
            config["outer"],
            seed=config["seed"],
            noise_type=config["noise"],
            recovery_type=config["recovery"],
        )
        return Outcome(values, vectors)

    return _op_prepared(op, run)


def _relative_residuals(apply: Callable[[torch.Tensor], torch.Tensor], out: Outcome) -> dict:
    """Largest ``‖Hv − λv‖ / |λ|`` and ``‖Hv − λv‖ / |λ₁|`` over the returned pairs."""
    v = out.vectors.to(torch.float32)
    hv = torch.cat([apply(v[:, j : j + 64]) for j in range(0, v.shape[1], 64)], 1)
    lam = out.values.to(torch.float64)
    res = (hv.to(torch.float64) - v.to(torch.float64) * lam).norm(dim=0)
    return {
        "max_residual_rel": float((res / lam.abs()).max()),
        "max_residual_rel_top": float(res.max() / lam.abs().max()),
    }


def _eigsh(linop: Any, k: int, tol: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.sparse.linalg import eigsh

    v0 = np.random.default_rng(seed).standard_normal(linop.shape[0])
    values, vectors = eigsh(linop, k=k, which="LM", tol=tol, v0=v0)
    order = np.argsort(-np.abs(values), kind="stable")
    return torch.from_numpy(values[order]), torch.from_numpy(vectors[:, order].copy())


def eigsh_method(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """ARPACK (``scipy.sparse.linalg.eigsh``, float64 Lanczos) on our float32 operator.

    ``config["interface"]``: ``matvec`` (one vector per call) or ``matmat`` (a block product
    offered as well; ARPACK's reverse communication asks for one vector at a time, so the
    call counts show whether it was ever used).
    """
    from scipy.sparse.linalg import LinearOperator

    op = hessian_operator(problem, flat)
    calls = {"matvec": 0, "matmat": 0}

    def matvec(x: np.ndarray) -> np.ndarray:
        calls["matvec"] += 1
        v = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1))
        return op.matmat(v).numpy().astype(np.float64)

    def matmat(x: np.ndarray) -> np.ndarray:
        calls["matmat"] += 1
        return (
            op.matmat(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(np.float64)
        )

    block = {"matmat": matmat} if config["interface"] == "matmat" else {}
    linop = LinearOperator(op.shape, matvec=matvec, dtype=np.float64, **block)

    def run() -> Outcome:
        op.num_products = 0
        values, vectors = _eigsh(linop, config["k"], config["tol"], config["seed"])
        return Outcome(values, vectors, {"calls": dict(calls)})

    return Prepared(run, lambda: op.num_products, lambda out: _relative_residuals(op.matmat, out))


def _model_at(problem: Problem, flat: torch.Tensor) -> nn.Module:
    model = build_model(problem.model)
    load_flat_params(model, flat)
    return model.eval()


def eigsh_curvlinops(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """eigsh on curvlinops' ``HessianLinearOperator(...).to_scipy()``: the peer's own HVPs."""
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator

    model = _model_at(problem, flat)
    x, y = hessian_set(problem)
    bs = problem.batch_size
    data = [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]
    hess = HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), data)
    scipy_op = hess.to_scipy()
    count = {"vectors": 0}

    def matvec(v: np.ndarray) -> np.ndarray:
        count["vectors"] += 1
        return scipy_op.matvec(v)

    linop = LinearOperator(scipy_op.shape, matvec=matvec, dtype=np.float64)

    def run() -> Outcome:
        count["vectors"] = 0
        values, vectors = _eigsh(linop, config["k"], config["tol"], config["seed"])
        return Outcome(values, vectors)

    def check(out: Outcome) -> dict[str, Any]:
        def apply(v: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(scipy_op.matmat(v.to(torch.float64).numpy()))

        return _relative_residuals(apply, out)

    return Prepared(run, lambda: count["vectors"], check)


def pyhessian_method(problem: Problem, flat: torch.Tensor, config: dict[str, Any]) -> Prepared:
    """PyHessian's power iteration with deflation for the top ``top_n`` eigenvalues.

    PyHessian takes the model, loss and data (one batch: the whole Hessian set), not an
    operator; its products are counted by wrapping ``pyhessian.hessian.hessian_vector_product``.
    The timed run includes its one gradient with ``create_graph``.
    """
    # ``pyhessian.hessian`` is also the name of the class its package exports.
    ph = importlib.import_module("pyhessian.hessian")

    model = _model_at(problem, flat)
    x, y = hessian_set(problem)
    count = {"vectors": 0}
    product = ph.hessian_vector_product

    def counted(grads: Any, params: Any, v: Any) -> Any:
        count["vectors"] += 1
        return product(grads, params, v)

    ph.hessian_vector_product = counted

    def run() -> Outcome:
        torch.manual_seed(config["seed"])  # PyHessian draws its start vectors from it
        hess = ph.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        values, vectors = hess.eigenvalues(
            maxIter=config["max_iter"], tol=config["tol"], top_n=config["top_n"]
        )
        flat_vectors = torch.stack([torch.cat([t.reshape(-1) for t in v]) for v in vectors], 1)
        values_t = torch.tensor(values, dtype=torch.float64)
        order = torch.argsort(values_t.abs(), descending=True, stable=True)
        return Outcome(values_t[order], flat_vectors[:, order].detach())

    return Prepared(run, lambda: count["vectors"])


METHODS: dict[str, Callable[[Problem, torch.Tensor, dict[str, Any]], Prepared]] = {
    "exact": exact,
    "eigsh": eigsh_method,
    "eigsh-curvlinops": eigsh_curvlinops,
    "hessketch": hessketch_method,
    "hessketch-iter": hessketch_method,
    "skerch": skerch_method,
    "pyhessian": pyhessian_method,
}
