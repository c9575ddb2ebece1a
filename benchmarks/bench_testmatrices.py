"""Cost of generating and applying test matrices, against one HVP of the 1M-parameter MLP.

Usage: python benchmarks/bench_testmatrices.py [--dims 1000135 895210 4000000] [--threads 2]
           [--repeats 5] [--end-to-end] [--memory]

For each D and kind: median seconds of ``rows`` per generated vector (a 64-row block) and of
``apply`` per column (``apply(x, s)``, x of shape (D, 64), s = 200), in float32. One-pass SEIGH
spends, per HVP, one generated row of Φ, one column through Ψ and, for the first k of s, one
through Φ: ``rows + (1 + k/s)·apply``. That cost is printed next to one HVP of the MLP
256→875→875→10 (D = 1,000,135; forward-over-reverse, block of 64, 500 points) and as the share
of wall time ``tm / (tm + hvp)``; the target is <= 10 %.

``--end-to-end`` times ``measure_block`` over a whole one-pass sketch (k = 100, s = 200) of that
MLP, splitting HVP time from the rest (building Φ and Ψ, once per sketch, is timed apart).
``--memory`` reports the peak resident memory (VmHWM) of one 64-row SSRFT ``rows`` block at
D = 10M in a fresh process, and of the previous implementation (git revision ``--old-rev``) at
smaller D, projected linearly to 10M (it would not fit in memory there).

The ratio ``/ HVP`` is always against the 1M MLP's HVP, as a fixed unit; an HVP of a model with
D parameters costs roughly D/1M times as much.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import hessketch
from hessketch.models import flatten_params
from hessketch.sketch import SketchSpec, measure_block
from hessketch.testmatrices import TEST_MATRIX_KINDS, make_test_matrix

MLP = {"name": "mlp", "widths": [256, 875, 875, 10], "activation": "tanh"}
REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (and first-use caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mlp_operator(points: int = 500) -> hessketch.HessianOperator:
    torch.manual_seed(0)
    model = hessketch.build_model(MLP)
    theta = flatten_params(model)
    x, y = torch.rand(points, 256), torch.randint(0, 10, (points,))
    return hessketch.HessianOperator(model, theta, x, y, batch_size=points)


def hvp_seconds(op: hessketch.HessianOperator, block: int, repeats: int) -> float:
    v = torch.randn(op.dim, block)
    return median_seconds(lambda: op(v), repeats) / block


def bench_kind(kind: str, dim: int, s: int, block: int, repeats: int) -> dict[str, float]:
    start = time.perf_counter()
    phi = make_test_matrix(kind, dim, seed=0, rows=s)
    phi.rows(0, 1)  # builds lazy tables
    build = time.perf_counter() - start
    x = torch.randn(dim, block)
    rows = median_seconds(lambda: phi.rows(0, block), repeats) / block
    apply = median_seconds(lambda: phi.apply(x, s), repeats) / block
    return {"build_s": build, "rows_s": rows, "apply_s": apply}


def end_to_end(
    op: hessketch.HessianOperator, kind: str, k: int, s: int, block: int
) -> tuple[float, float]:
    """Seconds to build Φ and Ψ, and the share of a one-pass sketch's wall time outside HVPs."""
    spec = SketchSpec(dim=op.dim, k=k, s=s, seed=0, test_matrix=kind, block_size=block)
    hvp_time = 0.0

    def timed(v: torch.Tensor) -> torch.Tensor:
        nonlocal hvp_time
        start = time.perf_counter()
        out = op(v)
        hvp_time += time.perf_counter() - start
        return out

    start = time.perf_counter()
    for phi in (spec.right(), spec.left()):  # once per sketch: tables and first-use caches
        phi.rows(0, 1)
        phi.apply(torch.zeros(op.dim, 1), s)
    build = time.perf_counter() - start
    start = time.perf_counter()
    for b in spec.blocks():
        measure_block(spec, timed, b)
    total = time.perf_counter() - start
    return build, 1.0 - hvp_time / total


def memory_child(impl: str, kind: str, dim: int, block: int) -> None:
    """In a fresh process: VmHWM after building the matrix, and after one rows block."""
    if impl == "current":
        build = make_test_matrix
    else:  # a file path holding an older testmatrices.py
        spec = importlib.util.spec_from_file_location("old_testmatrices", impl)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        build = module.make_test_matrix  # type: ignore[attr-defined]
    phi = build(kind, dim, 0)
    before = vm_hwm_mb()
    out = phi.rows(0, block)
    result = {"after_build_mb": before, "peak_mb": vm_hwm_mb(), "output_mb": out.nbytes / 2**20}
    print(json.dumps(result))


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_memory(impl: str, kind: str, dim: int, block: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--threads", str(threads)]
    cmd += ["--memory-child", impl, kind, str(dim), str(block)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_memory(args: argparse.Namespace) -> None:
    b = args.block
    new = measure_memory("current", "ssrft", args.memory_dim, b, args.threads)
    print(f"\npeak memory of one {b}-row SSRFT rows block (float32), fresh process, VmHWM:")
    print(
        f"  current  D={args.memory_dim}: {new['peak_mb']:.0f} MiB peak, of which "
        f"{new['after_build_mb']:.0f} after construction, {new['output_mb']:.0f} the output"
    )
    old_src = subprocess.run(
        ["git", "show", f"{args.old_rev}:src/hessketch/testmatrices.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_testmatrices.py"
        path.write_text(old_src)
        for dim in sorted({args.old_memory_dim, args.memory_dim // 10}):
            old = measure_memory(str(path), "ssrft", dim, b, args.threads)
            growth = old["peak_mb"] - old["after_build_mb"]
            print(
                f"  {args.old_rev}  D={dim}: {old['peak_mb']:.0f} MiB peak, "
                f"{growth:.0f} above construction; projected to D={args.memory_dim}: "
                f"{growth * args.memory_dim / dim / 1024:.1f} GiB above construction"
            )


def print_costs(args: argparse.Namespace) -> None:
    op = mlp_operator()
    t_hvp = hvp_seconds(op, args.block, args.repeats)
    per_hvp = 1 + args.k / args.s  # Ψ for every HVP, Φ for the first k of s
    print(
        f"threads={torch.get_num_threads()} s={args.s} k={args.k} block={args.block} "
        f"repeats={args.repeats} (medians)"
    )
    print(f"one HVP of the MLP (D={op.dim}): {t_hvp * 1e3:.2f} ms per vector")
    # The HVP is timed again next to every row, so a ratio compares like with like on a
    # machine whose load changes during the run.
    print(
        f"{'D':>9} {'kind':<12}{'build s':>8}{'rows ms/vec':>12}{'apply ms/col':>13}"
        f"{'per HVP ms':>11}{'HVP ms':>8}{'/ HVP':>7}{'share':>7}"
    )
    for dim in args.dims:
        for kind in args.kinds:
            r = bench_kind(kind, dim, args.s, args.block, args.repeats)
            tm = r["rows_s"] + per_hvp * r["apply_s"]
            t_hvp = hvp_seconds(op, args.block, args.repeats)
            print(
                f"{dim:>9} {kind:<12}{r['build_s']:>8.2f}{r['rows_s'] * 1e3:>12.2f}"
                f"{r['apply_s'] * 1e3:>13.2f}{tm * 1e3:>11.2f}{t_hvp * 1e3:>8.2f}"
                f"{tm / t_hvp:>7.3f}{tm / (tm + t_hvp):>7.1%}",
                flush=True,
            )
    if args.end_to_end:
        print(
            f"\none-pass sketch of the MLP, k={args.k}, s={args.s}: share of wall time "
            "outside the HVPs (after building Φ and Ψ, timed separately)"
        )
        for kind in args.kinds:
            build, share = end_to_end(op, kind, args.k, args.s, args.block)
            print(f"  {kind:<12}{share:>7.1%}   build {build:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="*", default=[1_000_135, 895_210, 4_000_000])
    parser.add_argument("--kinds", nargs="+", default=list(TEST_MATRIX_KINDS))
    parser.add_argument("--s", type=int, default=200)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-dim", type=int, default=10_000_000)
    parser.add_argument("--old-rev", default="6cee571")
    parser.add_argument("--old-memory-dim", type=int, default=250_000)
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        impl, kind, dim, block = args.memory_child
        memory_child(impl, kind, int(dim), int(block))
        return

    if args.dims or args.end_to_end:
        print_costs(args)
    if args.memory:
        print_memory(args)


if __name__ == "__main__":
    main()
