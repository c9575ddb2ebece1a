"""Peak memory of the out-of-core reduction against the size of the outer sketch Y.

Usage: python benchmarks/bench_reduce_memory.py [--dims 250000 1000000 2000000] [--k 128]

For each D, fills a Zarr sketch store with a synthetic measured sketch (a known low-rank-plus-
noise operator applied blockwise, so no D×k matrix is ever held while writing), then runs
`reduce_sketch` in a fresh process and reports its peak resident memory next to the size of
Y in float64 (what an in-memory QR of Y would need at least once).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hessketch.seigh import reduce_sketch
from hessketch.sketch import SketchSpec, measure_block
from hessketch.store import ZarrSketch, create_store


def build_store(path: Path, dim: int, k: int, rank: int = 16) -> None:
    spec = SketchSpec(dim=dim, k=k, s=2 * k, seed=0, block_size=32, probes=4)
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(dim, rank, generator=gen))[0]
    lam = torch.logspace(2, 0, rank)

    def op(v: torch.Tensor) -> torch.Tensor:  # H = U Λ Uᵀ + 1e-3 I
        return basis @ (lam[:, None] * (basis.T @ v)) + 1e-3 * v

    create_store(path, spec, {"param_hash": "synthetic"})
    sketch = ZarrSketch.open(path, mode="r+")
    for block in spec.blocks():
        for name, (start, values) in measure_block(spec, op, block).items():
            sketch.write(name, start, values)


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak, kept across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reduce_in_this_process(path: str) -> None:
    start = time.perf_counter()
    result = reduce_sketch(ZarrSketch.open(path), on_eigenvector_rows=lambda rows, w: None)
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": peak_mb,
                "top": float(result.eigenvalues[0]),
            }
        )
    )


def baseline_mb() -> float:
    code = "import torch, zarr, hessketch.seigh, sys; sys.path.insert(0, 'benchmarks');"
    code += "from bench_reduce_memory import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reduce_in_this_process(args.child)
        return
    print(f"baseline (python + torch + zarr imported): {baseline_mb():.0f} MB")
    print(f"{'D':>10}{'k':>6}{'Y float64 MB':>14}{'peak RSS MB':>13}{'seconds':>9}")
    for dim in args.dims:
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "sketch.zarr"
            build_store(store, dim, args.k)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(store)],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            y_mb = dim * args.k * 8 / 2**20
            print(
                f"{dim:>10}{args.k:>6}{y_mb:>14.0f}{row['peak_rss_mb']:>13.0f}{row['seconds']:>9.1f}"
            )


if __name__ == "__main__":
    main()
