"""Is the certificate's step-0 verdict on mlp16 a real error? Pairs against the exact Hessian.

Usage: python benchmarks/bench_certificate_subspace.py [--steps 0 100]

For the eigensolver benchmark's mlp16 problem (trained parameters cached in benchmarks/out),
builds the dense float64 Hessian, runs one-pass ``hessketch.decompose`` (k = 355, s = 710,
SSRFT, seed 0) on the float32 operator, and prints per step

- the certificate's backward errors of the first pairs and the same residuals computed with
  the exact Hessian (``‖Hw − λw‖ / ‖H‖₂``);
- for the span ``Q`` of the top ``j`` vectors: the subspace residual ``‖HQ − QQᵀHQ‖₂ / ‖H‖₂``
  (the backward error of ``span(Q)`` as an invariant subspace) and its overlap with the exact
  top-``j`` eigenspace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import hessketch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from eigbench.problems import PROBLEMS, hessian_operator, trained_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 100])
    args = parser.parse_args()
    torch.set_num_threads(2)
    problem = PROBLEMS["mlp16"]
    params = trained_params(HERE / "out", problem)
    for step in args.steps:
        dense = hessketch.dense_matrix(hessian_operator(problem, params[step], torch.float64))
        dense = (dense + dense.T) / 2
        exact_values, exact_vectors = torch.linalg.eigh(dense)
        order = torch.argsort(exact_values.abs(), descending=True)
        norm = float(exact_values.abs().max())
        op = hessian_operator(problem, params[step])
        dec = hessketch.decompose(op, op.dim, 355, 710, seed=0)
        w, lam = dec.eigenvectors.double(), dec.eigenvalues.double()
        exact_residual = (dense @ w - w * lam).norm(dim=0) / norm
        print(f"step {step}: certified k = {dec.certificate.trusted_k}")
        print("  backward errors, pairs 1-5 (certificate):", _fmt(dec.certificate.backward_errors))
        print("  backward errors, pairs 1-5 (exact H):    ", _fmt(exact_residual))
        for j in (1, 2, 5, 10, 20, 50, 100, 200, 355):
            q, _ = torch.linalg.qr(w[:, :j])
            hq = dense @ q
            residual = torch.linalg.matrix_norm(hq - q @ (q.T @ hq), 2) / norm
            overlap = (exact_vectors[:, order[:j]].T @ q).square().sum() / j
            print(f"  top {j:3d}: subspace residual {residual:.3g}, exact overlap {overlap:.4f}")


def _fmt(values: torch.Tensor) -> str:
    return ", ".join(f"{float(v):.4f}" for v in values[:5])


if __name__ == "__main__":
    main()
