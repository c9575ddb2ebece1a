"""Share of one-pass ``hessketch.seigh`` wall time spent outside Hessian-vector products.

Usage: python benchmarks/bench_seigh_overhead.py [--models mlp1m cnn3c3d] [--kinds ssrft ...]
           [--k 100] [--s 200] [--repeats 3]

On real network Hessians (500 random inputs, random labels; the network at initialization):
the MLP 256→875→875→10 (D = 1,000,135) and DeepOBS 3c3d (D = 895,210). For each test matrix,
`seigh(op, D, k, s)` is timed end to end; the operator's own clock gives the HVP time, and
wrapping every `TestMatrix.rows`/`apply` call gives the test-matrix time. Medians over
`--repeats` runs, 2 threads. Prints a markdown table and writes benchmarks/out/seigh_overhead.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from hessketch import HessianOperator, build_model, flatten_params, seigh
from hessketch.testmatrices import TEST_MATRIX_KINDS, make_test_matrix

# (model spec, input shape, points per HVP mini-batch): the CNN's forward-over-reverse
# products of a 64-vector block hold 64 tangent copies of every activation, so its 500 points
# go in mini-batches of 25 (about 2 GB); all 500 at once need over 20 GB.
MODELS = {
    "mlp1m": ({"name": "mlp", "widths": [256, 875, 875, 10], "activation": "tanh"}, (256,), 500),
    "cnn3c3d": ({"name": "cnn3c3d"}, (3, 32, 32), 25),
}


class Clock:
    """Accumulates the time spent in the wrapped test-matrix methods."""

    seconds = 0.0
    depth = 0  # only the outermost call counts (apply may call rows)

    @classmethod
    def wrap(cls, method):
        @functools.wraps(method)
        def timed(*args, **kwargs):
            cls.depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                cls.depth -= 1
                if cls.depth == 0:
                    cls.seconds += time.perf_counter() - start

        return timed


def instrument(kinds: list[str]) -> None:
    """Wrap rows/apply of every test-matrix class (once per class)."""
    seen = set()
    for kind in kinds:
        cls = type(make_test_matrix(kind, 16, 0, rows=4))
        for klass in cls.__mro__:
            if klass in seen or klass is object:
                continue
            seen.add(klass)
            for name in ("rows", "apply"):
                if name in vars(klass):
                    setattr(klass, name, Clock.wrap(vars(klass)[name]))


def operator(model_name: str, points: int = 500) -> HessianOperator:
    spec, shape, batch_size = MODELS[model_name]
    torch.manual_seed(0)
    model = build_model(spec)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(points, *shape, generator=gen)
    y = torch.randint(0, 10, (points,), generator=gen)
    return HessianOperator(model, flatten_params(model), x, y, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--kinds", nargs="+", default=list(TEST_MATRIX_KINDS))
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--s", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    instrument(args.kinds)
    rows = []
    for model_name in args.models:
        op = operator(model_name)
        for kind in args.kinds:
            runs = []
            for _ in range(args.repeats):
                op.seconds, Clock.seconds = 0.0, 0.0
                start = time.perf_counter()
                seigh(op, op.dim, args.k, args.s, seed=0, test_matrix=kind)
                wall = time.perf_counter() - start
                runs.append((wall, op.seconds, Clock.seconds))
            wall = statistics.median(r[0] for r in runs)
            hvp = statistics.median(r[1] for r in runs)
            tm = statistics.median(r[2] for r in runs)
            rows.append(
                {
                    "model": model_name,
                    "dim": op.dim,
                    "test_matrix": kind,
                    "wall_s": wall,
                    "hvp_s": hvp,
                    "test_matrix_s": tm,
                    "outside_hvp_share": 1 - hvp / wall,
                    "test_matrix_share": tm / wall,
                    "runs": runs,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "seigh_overhead.json").write_text(json.dumps(rows, indent=1))
    print(f"\nk = {args.k}, s = {args.s}, 2 threads, medians of {args.repeats} runs\n")
    print("| model | D | test matrix | wall s | HVP s | outside HVPs | test matrices |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['dim']:,} | {r['test_matrix']} | {r['wall_s']:.1f} | "
            f"{r['hvp_s']:.1f} | {100 * r['outside_hvp_share']:.1f} % | "
            f"{100 * r['test_matrix_share']:.1f} % |"
        )


if __name__ == "__main__":
    main()
