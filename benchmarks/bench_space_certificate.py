"""Certified eigenspaces against a reference: the space bound vs the true ‖sin Θ‖_F, in one run.

Usage:
    python benchmarks/bench_space_certificate.py --problem mlp16 [--steps 0 100 1000]
    python benchmarks/bench_space_certificate.py --problem mlp1m

For each Hessian of the problem (benchmarks/eigbench/problems.py) it computes the reference
in the same run (mlp16: the dense float64 Hessian and ``eigh``; mlp1m: ARPACK ``eigsh``,
``which="LM"``, ``tol=1e-6``, one BLAS thread, on the float32 operator) and runs hessketch's
one-pass SEIGH, block Krylov at fixed HVP counts and the adaptive run, all with their
certificates. It prints, at each reported k:

- ``bound``: the certificate's bound on ‖sin Θ(Ŵ_k, W_k)‖_F (``inf``: none given);
- ``true``: ‖Q_k − W_k W_kᵀ Q_k‖_F against the reference's top-k eigenvectors (``Q_k`` an
  orthonormal basis of the computed top-k span); ``bound/true`` must be ≥ 1;
- the mask overlap's interval and whether the reference's mask overlap lies inside;
- HVPs, wall seconds and ``space_k`` (the largest certified k at space tolerance 0.1).

Everything is also written to ``benchmarks/out/space-<problem>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # ARPACK's BLAS; torch keeps 2 threads

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import hessketch
from hessketch.metrics import magnitude_order, mask_overlap_curve
from hessketch.spacebound import overlap_interval

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from eigbench.problems import PROBLEMS, hessian_operator, trained_params  # noqa: E402

F64 = torch.float64

RUNS = {
    "mlp16": {
        "k": 355,
        "report": (10, 50, 100, 200, 350),
        "runs": {
            "one-pass s=710": {"passes": 1, "s": 710},
            "krylov 3x355": {"passes": 3, "width": 355, "s": 710},
            "krylov 10x71": {"passes": 10, "width": 71, "s": 710},
            "krylov 20x71": {"passes": 20, "width": 71, "s": 710},
            "adaptive top-350, budget 3000": {
                "max_hvps": 3000,
                "target": 350,
                "width": 71,
                "s": 710,
            },
            "adaptive top-350 float64, budget 3000": {
                "max_hvps": 3000,
                "target": 350,
                "width": 71,
                "s": 710,
                "float64": True,
            },
        },
    },
    "mlp1m": {
        "k": 100,
        "report": (10, 50, 100),
        "runs": {
            "one-pass s=200": {"passes": 1, "s": 200},
            "krylov 15x20 (300 HVPs)": {"passes": 15, "width": 20, "s": 200},
            "krylov 40x20 (800 HVPs)": {"passes": 40, "width": 20, "s": 200},
            "adaptive top-100, budget 1200": {
                "max_hvps": 1200,
                "target": 100,
                "width": 20,
                "s": 200,
            },
        },
    },
}


def reference(name: str, op: hessketch.HessianOperator, problem, flat, k: int):
    """Top-``k+1`` reference eigenpairs by descending |λ|, with its cost."""
    started = time.perf_counter()
    if name == "mlp16":
        dense = hessketch.dense_matrix(hessian_operator(problem, flat, F64))
        values, vectors = torch.linalg.eigh((dense + dense.T) / 2)
        how = "dense float64 Hessian, eigh"
    else:
        from scipy.sparse.linalg import LinearOperator, eigsh

        def matvec(v: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).reshape(-1, 1)
            return op(x).double().numpy().ravel()

        lin = LinearOperator((op.dim, op.dim), matvec=matvec, dtype=np.float64)
        before = op.num_products
        vals, vecs = eigsh(lin, k=k + 1, which="LM", tol=1e-6)
        values, vectors = torch.from_numpy(vals), torch.from_numpy(vecs)
        how = f"eigsh LM tol=1e-6, {op.num_products - before} HVPs"
    order = torch.argsort(values.abs(), descending=True)[: k + 1]
    return values[order], vectors[:, order], how, time.perf_counter() - started


def true_sines(vectors: torch.Tensor, exact: torch.Tensor, ks: tuple[int, ...]) -> dict[int, float]:
    out = {}
    for j in ks:
        q, _ = torch.linalg.qr(vectors[:, :j].to(F64))
        w = exact[:, :j]
        out[j] = float((q - w @ (w.T @ q)).norm())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=sorted(RUNS), default="mlp16")
    parser.add_argument("--steps", type=int, nargs="+", default=None)
    parser.add_argument("--runs", nargs="+", default=None, help="names of RUNS to run")
    args = parser.parse_args()
    torch.set_num_threads(2)
    problem = PROBLEMS[args.problem]
    setup = RUNS[args.problem]
    k, ks = setup["k"], setup["report"]
    params = trained_params(HERE / "out", problem)
    results = []
    for step in args.steps or problem.steps:
        op = hessian_operator(problem, params[step])
        _values, exact, how, seconds = reference(args.problem, op, problem, params[step], k)
        mask = magnitude_order(params[step])
        kmax = max(ks)
        ref_overlap = mask_overlap_curve(exact[mask[:kmax], :kmax], torch.arange(kmax))
        print(f"\n### {args.problem}, step {step}: reference {how}, {seconds:.1f} s")
        print(
            "| run | HVPs | wall s | space_k | "
            + " | ".join(f"k={j}: bound / true / ratio / overlap in [low, high] (ref)" for j in ks)
            + " |"
        )
        print("|---|---|---|---|" + "---|" * len(ks))
        for name, kw in setup["runs"].items():
            if args.runs and name not in args.runs:
                continue
            kw = dict(kw)
            dtype = F64 if kw.pop("float64", False) else torch.float32
            the_op = op if dtype == torch.float32 else hessian_operator(problem, params[step], F64)
            before = the_op.num_products
            started = time.perf_counter()
            d = hessketch.decompose(the_op, the_op.dim, k, seed=0, dtype=dtype, **kw)
            wall = time.perf_counter() - started
            hvps = the_op.num_products - before
            c = d.certificate
            truth = true_sines(d.eigenvectors, exact, ks)
            computed = mask_overlap_curve(
                d.eigenvectors.to(F64)[mask[:kmax], :kmax], torch.arange(kmax)
            )
            low, high = overlap_interval(
                computed,
                c.space_bounds[:kmax],
                orthonormality=c.orthonormality,
                rounding=c.rounding,
            )
            cells, row = (
                [],
                {
                    "step": step,
                    "run": name,
                    "hvps": hvps,
                    "wall_s": wall,
                    "space_k": c.space_k,
                    "stopped": d.stopped,
                    "at": {},
                },
            )
            for j in ks:
                b, t = float(c.space_bounds[j - 1]), truth[j]
                inside = bool(low[j - 1] <= ref_overlap[j - 1] <= high[j - 1])
                ratio = b / t if t > 0 else float("inf")
                cells.append(
                    f"{b:.2g} / {t:.2g} / {ratio:.2g} / {float(computed[j - 1]):.4g} in "
                    f"[{float(low[j - 1]):.4g}, {float(high[j - 1]):.4g}] "
                    f"({float(ref_overlap[j - 1]):.4g}, {'in' if inside else 'OUT'})"
                )
                row["at"][j] = {
                    "bound": b,
                    "true": t,
                    "overlap": float(computed[j - 1]),
                    "low": float(low[j - 1]),
                    "high": float(high[j - 1]),
                    "reference_overlap": float(ref_overlap[j - 1]),
                    "inside": inside,
                }
            stop = f" ({d.stopped})" if d.stopped else ""
            head = f"| {name}{stop} | {hvps} | {wall:.1f} | {c.space_k} | "
            print(head + " | ".join(cells) + " |")
            results.append(row)
            sys.stdout.flush()
    out = HERE / "out" / f"space-{args.problem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
