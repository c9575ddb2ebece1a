"""Stage ``exact_hessian``: the dense float64 Hessian and its eigendecomposition (small nets)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from hessketch.errors import HessketchError, NumericalError
from hessketch.hessian import dense_matrix
from hessketch.pipeline.common import EigenpairWriter
from hessketch.pipeline.hessian_at_step import HessianSpec, hessian_at_step

__all__ = ["exact_eigenpairs", "refuse_degenerate"]

log = logging.getLogger(__name__)


def refuse_degenerate(matrix: torch.Tensor, what: str) -> None:
    """:class:`NumericalError` if a dense Hessian has non-finite entries or is exactly zero."""
    if not bool(torch.isfinite(matrix).all()):
        raise NumericalError(f"{what} has non-finite entries")
    if not bool(matrix.any()):
        raise NumericalError(
            f"{what} is exactly zero (saturated or diverged network?): there is nothing to "
            "decompose"
        )


def exact_eigenpairs(
    *,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    k: int,
    eigenpairs_path: str | Path,
    max_dim: int = 15_000,
) -> None:
    """Dense Hessian in float64 on the CPU, ``eigh``, top-``k`` pairs by ``|λ|`` to a file.

    The file also records ``‖H‖_F² = Σλ²`` over all eigenvalues (for curvature concentration).
    """
    op, provenance = hessian_at_step(
        trajectory_path, step, hessian, device=torch.device("cpu"), dtype="float64"
    )
    if op.dim > max_dim:
        raise HessketchError(
            f"exact Hessian refused: D={op.dim} exceeds exact.max_dim={max_dim} "
            f"(a dense float64 Hessian needs {op.dim**2 * 8 / 2**30:.1f} GiB)"
        )
    started = time.perf_counter()
    matrix = dense_matrix(op)
    log.info(
        "dense Hessian built in %.1f s; eigh of %d×%d ...",
        time.perf_counter() - started,
        op.dim,
        op.dim,
    )
    refuse_degenerate(matrix, f"the Hessian at step {step}")
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    del matrix
    order = torch.argsort(eigenvalues.abs(), descending=True, stable=True)
    log.info("eigh done after %.1f s", time.perf_counter() - started)
    attrs = {"method": "exact", "provenance": provenance}
    with EigenpairWriter(eigenpairs_path, op.dim, k, attrs) as writer:
        writer.write_rows(slice(0, op.dim), eigenvectors[:, order[:k]])
        writer.close(
            eigenvalues[order[:k]],
            frobenius_sq=float(eigenvalues.square().sum()),
            seconds=time.perf_counter() - started,
        )
