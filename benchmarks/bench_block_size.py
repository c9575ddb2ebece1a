"""One-pass hessketch against skerch 1.2 on mlp16 at the paper's budget, by product block size.

Usage: .venv-bench/bin/python benchmarks/bench_block_size.py [--step 100] [--repeats 5]
           [--blocks 64 128 256 355 710]

On the eigensolver benchmark's mlp16 operator (trained parameters cached in benchmarks/out):
``hessketch.decompose(op, D, 355, 710, certify=False, block_size=b)`` (710 products plus 10
probes) for each block size ``b``, and skerch 1.2 ``seigh`` (Rademacher, ``hmt``, 710
products), all in one process with 2 threads, interleaved round by round; medians and minima
of ``--repeats`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import hessketch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from eigbench.problems import PROBLEMS, hessian_operator, trained_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--blocks", type=int, nargs="+", default=[64, 128, 256, 355, 710])
    args = parser.parse_args()
    from skerch.algorithms import seigh as skerch_seigh

    torch.set_num_threads(2)
    problem = PROBLEMS["mlp16"]
    op = hessian_operator(problem, trained_params(HERE / "out", problem)[args.step])

    runs = {
        f"hessketch block {block}": (
            lambda b=block: hessketch.decompose(op, op.dim, 355, 710, certify=False, block_size=b)
        )
        for block in args.blocks
    }
    runs["skerch"] = lambda: skerch_seigh(
        op,
        "cpu",
        torch.float32,
        355,
        seed=12345,
        noise_type="rademacher",
        recovery_type="hmt",
    )
    # interleaved (one run of each per round) so that drift in the machine's load hits all alike
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name}: median {statistics.median(values):.3f} s, min {min(values):.3f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
