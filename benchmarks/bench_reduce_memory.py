"""Peak memory and time of the one-pass reduction (stage ``reduce_sketch``) against D and k.

Usage:
    python benchmarks/bench_reduce_memory.py [--dims 1000000 2000000 4000000] [--k 500]
        [--s 1000] [--probes 10] [--test-matrix sparse-sign] [--row-block R] [--threads 1]
        [--store-dir DIR] [--build-only] [--no-overlap] [--out JSON]

For each D, fills a Zarr sketch store (``hessketch.store.create_store``) with the sketch of a
known operator ``H = U Λ Uᵀ + σ I`` (``U`` a random orthonormal ``D×16``), measured block by
block with the real :func:`hessketch.sketch.measure_block`, so the builder never holds more
than one ``D×block_size`` block; it writes one receipt with the digests the store's ``write``
returned, exactly as a measurement shard does. A fresh process then runs the real stage,
:func:`hessketch.pipeline.reduce.reduce_sketch_store` (receipts verified, every row re-hashed,
eigenvectors written to HDF5, report), and reports

- its peak resident memory (``VmHWM``) over the whole stage and per phase (pass 1 = streamed
  TSQR + hashing + probe products; core = checksums of Z/PhiY, SVD, least squares, ``eigh``;
  pass 2 = eigenvectors ``W = Y B`` written row block by row block + probe residuals), the
  peak of each phase measured after resetting ``VmHWM`` (``/proc/self/clear_refs``);
- wall and CPU seconds of each phase (CPU seconds are less sensitive to a shared machine);
- the top eigenvalues found against the known ones (a sanity check that the store is right).

Then, in another fresh process, the stage :func:`hessketch.pipeline.overlap.compute_overlap`
on those eigenpairs (it reads only the K mask rows; the store's provenance is the hash of a
synthetic parameter vector saved as a one-step trajectory): its peak RSS and seconds.

``--row-block R`` overrides the reader's row block (``ZarrSketch.row_block``, by default
``hessketch.store.reduction_row_block(k + probes)``: 65,536 rows at k = 500, 16,384 at
k = 1,500) to show how the peak scales with it. Results are merged into
``benchmarks/out/reduce_memory.json`` (keyed by D, k, s, row block, threads); with
``--build-only`` the builder's own peak RSS (the host side of a measurement shard with a
synthetic operator) is recorded instead. Stores live under ``--tmp`` (default /tmp) and are
deleted after each D, or under ``--store-dir``, kept and reused by later runs (building the
D = 4 M, k = 500 store writes 8 GB and takes 1–12 minutes depending on the machine's load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hessketch.sketch import SketchSpec, measure_block
from hessketch.store import (
    ZarrSketch,
    create_store,
    reduction_row_block,
    write_json_atomic,
)
from hessketch.trajectory import param_hash, write_trajectory

RANK = 16
NOISE = 1e-4
DEFAULT_OUT = Path(__file__).parent / "out" / "reduce_memory.json"


def known_eigenvalues(rank: int = RANK) -> torch.Tensor:
    """The nonzero part of the spectrum: λ = logspace(2, 0) + σ, then σ (D − rank times)."""
    return torch.logspace(2, 0, rank, dtype=torch.float64) + NOISE


def synthetic_params(dim: int) -> torch.Tensor:
    """The parameter vector the synthetic sketch is "at" (for provenance and the overlap job)."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(1))


def trajectory_path(store: Path) -> Path:
    return store.with_suffix(".trajectory.h5")


def build_store(path: Path, spec: SketchSpec, receipt: Path) -> dict:
    """Measure ``H = U Λ Uᵀ + σ I`` blockwise into a fresh store; write one receipt.

    Also writes a one-step trajectory with the parameters whose hash the store carries, so
    the overlap job can run on the eigenpairs.
    """
    started = time.perf_counter()
    reset_peak()
    theta = synthetic_params(spec.dim)
    write_trajectory(trajectory_path(path), [0], [theta], {"model": "synthetic"})
    provenance = {"param_hash": param_hash(theta), "step": 0}
    del theta
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(spec.dim, RANK, generator=gen))[0]
    lam = torch.logspace(2, 0, RANK)

    def op(v: torch.Tensor) -> torch.Tensor:
        return basis @ (lam[:, None] * (basis.T @ v)) + NOISE * v

    create_store(path, spec, provenance)
    sketch = ZarrSketch.open(path, mode="r+")
    digests = {}
    blocks = spec.blocks()
    for block in blocks:
        for name, (start, values) in measure_block(spec, op, block).items():
            digests[f"{name}:{start}"] = sketch.write(name, start, values)
    seconds = time.perf_counter() - started
    write_json_atomic(
        receipt,
        {
            "store_id": sketch.store_id,
            "param_hash": provenance["param_hash"],
            "shard": "1-of-1",
            "blocks": [b.to_list() for b in blocks],
            "digests": digests,
            "hvps": spec.s + spec.probes,
            "hvp_seconds": seconds,
            "seconds": seconds,
            "device": "cpu",
            "host": platform.node(),
            "torch": torch.__version__,
            "environment": {},
        },
    )
    return {"build_seconds": seconds, "build_peak_rss_mb": peak_rss_mb()}


# --- the child: one reduction in a fresh process -------------------------------------------


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak, kept across exec)."""
    return vm_kb("VmHWM") / 1024


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Phases:
    """Wall time, CPU time and peak RSS of consecutive phases (VmHWM reset at each boundary)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}
        self.overall_peak_mb = 0.0
        self._name = ""
        self._wall = self._cpu = 0.0

    def start(self, name: str) -> None:
        now_wall, now_cpu = time.perf_counter(), cpu_seconds()
        if self._name:
            peak = peak_rss_mb()
            self.overall_peak_mb = max(self.overall_peak_mb, peak)
            self.rows[self._name] = {
                "wall_s": now_wall - self._wall,
                "cpu_s": now_cpu - self._cpu,
                "peak_rss_mb": peak,
                "rss_at_end_mb": vm_kb("VmRSS") / 1024,
            }
        self._name, self._wall, self._cpu = name, now_wall, now_cpu
        if name:
            reset_peak()


def reduce_in_this_process(args: argparse.Namespace) -> None:
    import importlib

    stage = importlib.import_module("hessketch.pipeline.reduce")
    seigh = importlib.import_module("hessketch.seigh")  # the package re-exports a function seigh

    torch.set_num_threads(args.threads)
    base_mb = vm_kb("VmRSS") / 1024
    phases = Phases()
    # Phase boundaries from the stage's own steps: check_digests runs right after pass 1, and
    # _core between the checksums and pass 2.
    check_digests, core = stage.check_digests, seigh._core

    def timed_check(*a, **kw):
        phases.start("core")
        return check_digests(*a, **kw)

    def timed_core(*a, **kw):
        out = core(*a, **kw)
        phases.start("pass2")
        return out

    stage.check_digests, seigh._core = timed_check, timed_core
    if args.row_block:
        opened = ZarrSketch.open

        def open_with_row_block(cls, *a, **kw):
            sketch = opened(*a, **kw)
            sketch.row_block = args.row_block
            return sketch

        ZarrSketch.open = classmethod(open_with_row_block)
    store = Path(args.child)
    started_wall, started_cpu = time.perf_counter(), cpu_seconds()
    phases.start("pass1")
    stage.reduce_sketch_store(
        store_path=store,
        receipt_paths=[store.with_suffix(".receipt.json")],
        eigenpairs_path=store.with_suffix(".eigenpairs.h5"),
        report_path=store.with_suffix(".report.json"),
    )
    phases.start("")
    report = json.loads(store.with_suffix(".report.json").read_text())
    import h5py

    with h5py.File(store.with_suffix(".eigenpairs.h5")) as f:
        top = f["eigenvalues"][:RANK].tolist()
    known = known_eigenvalues()
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - started_wall,
                "cpu_s": cpu_seconds() - started_cpu,
                "peak_rss_mb": phases.overall_peak_mb,
                "import_rss_mb": base_mb,
                "phases": phases.rows,
                "reduce_seconds_reported": report["reduce_seconds"],
                "top_eigenvalues": top,
                "known_eigenvalues": known.tolist(),
                "top_eigenvalue_rel_errors": ((torch.tensor(top) - known).abs() / known).tolist(),
                "relative_error_estimate": report.get("relative_error_estimate"),
            }
        )
    )


def overlap_in_this_process(args: argparse.Namespace) -> None:
    """The stage compute_overlap on the eigenpairs the reduction wrote (mask rows only)."""
    from hessketch.pipeline.overlap import compute_overlap

    torch.set_num_threads(args.threads)
    store = Path(args.overlap_child)
    out = store.with_suffix(".overlap")
    base_mb = vm_kb("VmRSS") / 1024
    reset_peak()
    started_wall, started_cpu = time.perf_counter(), cpu_seconds()
    compute_overlap(
        eigenpairs_path=store.with_suffix(".eigenpairs.h5"),
        trajectory_path=trajectory_path(store),
        step=0,
        report_k=args.report_k,
        random_mask_seed=0,
        overlap_path=out / "overlap.tsv",
        distances_path=out / "distances.tsv",
        spectrum_path=out / "spectrum.tsv",
        summary_path=out / "summary.json",
    )
    row = {
        "wall_s": time.perf_counter() - started_wall,
        "cpu_s": cpu_seconds() - started_cpu,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_mb,
        "report_k": args.report_k,
    }
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(row))


def run_child(args: argparse.Namespace, flag: str, store: Path, *extra: str) -> dict:
    cmd = [sys.executable, __file__, flag, str(store), "--threads", str(args.threads), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{flag} failed for {store}:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the parent ------------------------------------------------------------------------------


def merge(out: Path, key: str, row: dict) -> None:
    data = json.loads(out.read_text()) if out.exists() else {}
    data[key] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--s", type=int, help="inner measurements (default 2k)")
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--test-matrix", default="sparse-sign")
    parser.add_argument("--row-block", type=int, help="override ZarrSketch.row_block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--store-dir", help="keep stores here (reused by later runs) instead of a temporary dir"
    )
    parser.add_argument("--build-only", action="store_true", help="build the stores, stop")
    parser.add_argument(
        "--no-overlap", action="store_true", help="skip the overlap job on the eigenpairs"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--overlap-child", help=argparse.SUPPRESS)
    parser.add_argument("--report-k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reduce_in_this_process(args)
        return
    if args.overlap_child:
        overlap_in_this_process(args)
        return
    s = args.s or 2 * args.k
    print(
        f"{'D':>10}{'k':>6}{'s':>6}{'rows':>7}{'peak RSS MB':>13}{'wall s':>8}{'cpu s':>8}"
        f"{'pass1':>8}{'core':>7}{'pass2':>8}{'build s':>9}{'overlap MB':>11}{'s':>6}"
    )
    for dim in args.dims:
        spec = SketchSpec(
            dim=dim,
            k=args.k,
            s=s,
            seed=0,
            test_matrix=args.test_matrix,
            block_size=args.block_size,
            probes=args.probes,
        )
        keep = args.store_dir is not None
        tmp = Path(args.store_dir or tempfile.mkdtemp(prefix="bench_reduce_", dir=args.tmp))
        store = tmp / f"sketch-D{dim}-k{args.k}-s{s}-q{args.probes}-{args.test_matrix}.zarr"
        receipt = store.with_suffix(".receipt.json")
        try:
            if receipt.exists():  # built by an earlier --store-dir run
                build = {"build_seconds": json.loads(receipt.read_text())["seconds"]}
                if not trajectory_path(store).exists():
                    sys.exit(f"{store} has no trajectory (built by an older version): delete it")
            else:
                tmp.mkdir(parents=True, exist_ok=True)
                build = build_store(store, spec, receipt)
            if args.build_only:
                if "build_peak_rss_mb" in build:  # the host side of a measurement shard
                    merge(args.out, f"build:D={dim},k={args.k},s={s}", {**spec.to_dict(), **build})
                print(f"{dim:>10}{args.k:>6}{s:>6} built {store} in {build['build_seconds']:.0f} s")
                continue
            extra = ["--row-block", str(args.row_block)] if args.row_block else []
            row = run_child(args, "--child", store, *extra)
            if not args.no_overlap:
                row["overlap_job"] = run_child(
                    args, "--overlap-child", store, "--report-k", str(args.k)
                )
        finally:
            for suffix in (".eigenpairs.h5", ".report.json"):
                store.with_suffix(suffix).unlink(missing_ok=True)
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
        row_block = args.row_block or min(dim, reduction_row_block(args.k + args.probes))
        row.update(
            spec.to_dict(),
            row_block=row_block,
            threads=args.threads,
            y_float32_gb=dim * args.k * 4 / 1e9,
            load_average=os.getloadavg(),
            cpu=platform.processor() or platform.machine(),
            malloc_env={k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            **build,
        )
        key = f"D={dim},k={args.k},s={s},rows={row_block},threads={args.threads}"
        if row["malloc_env"]:
            key += "," + ",".join(f"{k}={v}" for k, v in sorted(row["malloc_env"].items()))
        merge(args.out, key, row)
        ph = row["phases"]
        print(
            f"{dim:>10}{args.k:>6}{s:>6}{row_block:>7}{row['peak_rss_mb']:>13.0f}"
            f"{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{ph['pass1']['wall_s']:>8.1f}"
            f"{ph['core']['wall_s']:>7.1f}{ph['pass2']['wall_s']:>8.1f}{build['build_seconds']:>9.1f}"
            + (
                f"{row['overlap_job']['peak_rss_mb']:>11.0f}{row['overlap_job']['wall_s']:>6.1f}"
                if "overlap_job" in row
                else ""
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
