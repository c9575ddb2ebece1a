"""Peak memory and time of the block Krylov jobs on Zarr wave stores, against D and the basis size.

Usage:
    python benchmarks/bench_waves_memory.py [--dims 1000000 2000000 4000000] [--waves 4]
        [--width 100] [--k 200] [--test-matrix sparse-sign] [--store-dir DIR] [--out JSON]

For each D, builds ``--waves`` wave stores exactly as the workflow does, for the synthetic
operator ``H = diag(d)`` with ``d`` a random permutation of ``1, 1/2, 1/3, …, 1/D`` (full rank,
distinct eigenvalues, so no Krylov direction is dropped; ``HV`` costs ``O(D·b)``):

- wave 0: ``V_0`` = the first ``width`` test vectors
  (:func:`hessketch.wavestore.create_wave_store`);
- wave ``j ≥ 1``: :func:`hessketch.krylov.plan_next_block` + :func:`write_next_block` over a
  :class:`hessketch.wavestore.ZarrBasis` of the waves before it;
- ``HV`` of every wave written block by block with ``WaveStore.write`` (the digests it returns go
  into a receipt, as a measurement shard writes them).

Then two jobs run, each in a fresh process, and report peak RSS (``VmHWM``, also per phase
after resetting it) and wall/CPU seconds:

- ``create``: the job ``create_krylov_wave`` for the next wave (everything it does after loading
  the parameters): open and verify all waves (receipts, chain, one hashing pass over ``V`` and
  ``HV``), ``plan_next_block`` (three passes), ``create_wave_store`` with ``write_next_block``
  (one pass, then the digests of the new ``V``);
- ``reduce``: the stage :func:`hessketch.pipeline.waves.reduce_krylov` itself: open and verify,
  ``rayleigh_ritz`` (two passes; the second writes the Ritz vectors to HDF5), certificate.

Results are merged into ``benchmarks/out/waves_memory.json``; stores live under ``--tmp`` (or
``--store-dir``, kept and reused) and are deleted after each D otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_reduce_memory import Phases, cpu_seconds, merge, peak_rss_mb, reset_peak, vm_kb

from hessketch.krylov import ROW_BLOCK_BYTES, plan_next_block, write_next_block
from hessketch.sketch import SketchSpec
from hessketch.store import write_json_atomic
from hessketch.wavestore import WaveSpec, WaveStore, ZarrBasis, create_wave_store

DEFAULT_OUT = Path(__file__).parent / "out" / "waves_memory.json"


def diagonal(dim: int) -> torch.Tensor:
    """The synthetic operator's diagonal: a random permutation of 1, 1/2, …, 1/D (float32)."""
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(dim, generator=gen)
    return (1.0 / (1.0 + perm.to(torch.float64))).to(torch.float32)


def measure_wave(path: Path, d: torch.Tensor, receipt: Path) -> float:
    """Write ``HV = diag(d) V`` block by block and the receipt; returns seconds."""
    started = time.perf_counter()
    store = WaveStore.open(path, mode="r+")
    digests = {}
    for block in store.spec.blocks():
        v = store.read_block_of_v(block)
        digests[f"HV:{block.start}"] = store.write("HV", block.start, d[:, None] * v)
    seconds = time.perf_counter() - started
    write_json_atomic(
        receipt,
        {
            "store_id": store.store_id,
            "param_hash": "synthetic",
            "shard": "1-of-1",
            "blocks": [b.to_list() for b in store.spec.blocks()],
            "digests": digests,
            "hvps": store.spec.width,
            "hvp_seconds": seconds,
            "seconds": seconds,
            "device": "cpu",
            "host": platform.node(),
            "torch": torch.__version__,
            "environment": {},
        },
    )
    return seconds


def wave_paths(folder: Path, j: int) -> tuple[Path, Path]:
    return folder / f"wave{j}.zarr", folder / f"wave{j}.receipt.json"


def create_next_wave(folder: Path, j: int, spec: SketchSpec, basis: ZarrBasis | None) -> None:
    """What create_krylov_wave does for wave ``j`` once it has the parameters."""
    path, _ = wave_paths(folder, j)
    provenance = {"param_hash": "synthetic", "step": 0}
    if basis is None:
        matrix = spec.right()

        def fill_start(write):
            for a in range(0, spec.s, spec.block_size):
                b = min(a + spec.block_size, spec.s)
                write(slice(None), slice(a, b), matrix.rows(a, b, dtype=torch.float64))

        wave_spec = WaveSpec(spec.dim, spec.s, spec.block_size)
        create_wave_store(path, wave_spec, provenance, fill_start, {"wave": 0, "previous": []})
        return
    plan = plan_next_block(basis)
    if plan.width == 0:
        raise RuntimeError(f"the Krylov space is invariant after {j} waves")

    def fill(write):
        write_next_block(basis, plan, lambda rows, values: write(rows, slice(None), values))

    create_wave_store(
        path,
        WaveSpec(spec.dim, plan.width, spec.block_size),
        provenance,
        fill,
        {"wave": j, "previous": [s.store_id for s in basis.stores]},
    )


def open_waves(folder: Path, count: int) -> ZarrBasis:
    """The pipeline's own opening: receipts, chain, one full hashing pass."""
    waves = importlib.import_module("hessketch.pipeline.waves")
    paths = [wave_paths(folder, j) for j in range(count)]
    return waves._open_waves([p for p, _ in paths], [[r] for _, r in paths])


def build_waves(folder: Path, spec: SketchSpec, waves: int) -> dict:
    """Build the missing waves; seconds and peak RSS of each build step go to build.json.

    The peaks are of this (parent) process, which also holds the diagonal (4·D bytes): the
    creation of wave 0 is the job ``create_krylov_wave`` for wave 0, the HV step the host side
    of ``measure_wave_shard`` (without a model).
    """
    record = folder / "build.json"
    seconds = json.loads(record.read_text()) if record.exists() else {}
    d = diagonal(spec.dim)
    for j in range(waves):
        path, receipt = wave_paths(folder, j)
        if receipt.exists():
            continue
        started = time.perf_counter()
        reset_peak()
        create_next_wave(folder, j, spec, open_waves(folder, j) if j else None)
        create_peak = peak_rss_mb()
        reset_peak()
        hv = measure_wave(path, d, receipt)
        seconds[str(j)] = {
            "create_s": time.perf_counter() - started - hv,
            "create_peak_rss_mb": create_peak,
            "hv_s": hv,
            "hv_peak_rss_mb": peak_rss_mb(),
        }
        write_json_atomic(record, seconds)
        print(f"  built wave {j} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"build": seconds}


# --- the children ----------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    folder = Path(args.child)
    spec = SketchSpec(
        dim=args.dim,
        k=args.width,
        s=args.width,
        test_matrix=args.test_matrix,
        block_size=args.block_size,
    )
    waves_mod = importlib.import_module("hessketch.pipeline.waves")
    phases = Phases()
    base_mb = vm_kb("VmRSS") / 1024
    started_wall, started_cpu = time.perf_counter(), cpu_seconds()
    result: dict = {}
    if args.job == "create":
        phases.start("open")
        basis = open_waves(folder, args.waves)
        phases.start("plan")
        plan = plan_next_block(basis)
        phases.start("write")
        path, _ = wave_paths(folder, args.waves)
        create_wave_store(
            path,
            WaveSpec(spec.dim, plan.width, spec.block_size),
            {"param_hash": "synthetic", "step": 0},
            lambda write: write_next_block(
                basis, plan, lambda rows, values: write(rows, slice(None), values)
            ),
            {"wave": args.waves, "previous": [s.store_id for s in basis.stores]},
        )
        phases.start("")
        shutil.rmtree(path, ignore_errors=True)
        result["new_width"] = plan.width
    else:
        rayleigh_ritz = waves_mod.rayleigh_ritz

        def timed_rr(*a, **kw):
            phases.start("rayleigh_ritz")
            out = rayleigh_ritz(*a, **kw)
            phases.start("certificate")
            return out

        waves_mod.rayleigh_ritz = timed_rr
        paths = [wave_paths(folder, j) for j in range(args.waves)]
        out = folder / "reduce"
        phases.start("open")
        waves_mod.reduce_krylov(
            store_paths=[p for p, _ in paths],
            receipt_paths=[[r] for _, r in paths],
            k=args.k,
            tolerance=0.05,
            eigenpairs_path=out / "eigenpairs.h5",
            report_path=out / "report.json",
            certificate_path=out / "certificate.json",
            certificate_table_path=out / "certificate.tsv",
        )
        phases.start("")
        report = json.loads((out / "report.json").read_text())
        import h5py

        with h5py.File(out / "eigenpairs.h5") as f:
            top = f["eigenvalues"][:10].tolist()
        shutil.rmtree(out, ignore_errors=True)
        result.update(
            basis_dim=report["basis_dim"],
            wave_widths=report["wave_widths"],
            trusted_k=report["trusted_k"],
            top_ritz_values=top,
            known_top=[1.0 / (1 + i) for i in range(10)],
        )
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - started_wall,
                "cpu_s": cpu_seconds() - started_cpu,
                "peak_rss_mb": phases.overall_peak_mb,
                "import_rss_mb": base_mb,
                "phases": phases.rows,
                **result,
            }
        )
    )


# --- the parent ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--waves", type=int, default=4, help="measured waves")
    parser.add_argument("--width", type=int, default=100, help="columns per wave")
    parser.add_argument("--k", type=int, default=200, help="Ritz pairs kept by reduce")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--test-matrix", default="sparse-sign")
    parser.add_argument("--jobs", nargs="*", default=["create", "reduce"], help="none: build only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--store-dir", help="keep the waves here (reused) instead of a temp dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"{'D':>10}{'waves':>6}{'width':>6}{'n':>6}{'job':>8}{'peak RSS MB':>13}"
        f"{'wall s':>8}{'cpu s':>8}  phases (wall s)"
    )
    for dim in args.dims:
        spec = SketchSpec(
            dim=dim,
            k=args.width,
            s=args.width,
            test_matrix=args.test_matrix,
            block_size=args.block_size,
        )
        root = Path(args.store_dir) if args.store_dir else Path(args.tmp)
        root.mkdir(parents=True, exist_ok=True)
        folder = (
            root / f"waves-D{dim}-w{args.width}-{args.test_matrix}"
            if args.store_dir
            else Path(tempfile.mkdtemp(prefix="bench_waves_", dir=root))
        )
        folder.mkdir(exist_ok=True)
        try:
            build = build_waves(folder, spec, args.waves)
            for job in args.jobs:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(folder),
                    "--job",
                    job,
                    "--dim",
                    str(dim),
                    "--waves",
                    str(args.waves),
                    "--width",
                    str(args.width),
                    "--k",
                    str(args.k),
                    "--block-size",
                    str(args.block_size),
                    "--test-matrix",
                    args.test_matrix,
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"job {job} failed at D={dim}:\n{out.stderr[-4000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                n = args.waves * args.width
                row.update(
                    job=job,
                    dim=dim,
                    waves=args.waves,
                    width=args.width,
                    basis_columns=n,
                    k=args.k,
                    block_size=args.block_size,
                    test_matrix=args.test_matrix,
                    threads=args.threads,
                    row_block_bytes=ROW_BLOCK_BYTES,
                    stored_gb=2 * dim * n * 4 / 1e9,
                    load_average=os.getloadavg(),
                    **build,
                )
                key = f"D={dim},waves={args.waves},width={args.width},k={args.k},job={job}"
                merge(args.out, f"{key},threads={args.threads}", row)
                phases = " ".join(f"{p}={v['wall_s']:.1f}" for p, v in row["phases"].items())
                print(
                    f"{dim:>10}{args.waves:>6}{args.width:>6}{n:>6}{job:>8}"
                    f"{row['peak_rss_mb']:>13.0f}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}"
                    f"  {phases}",
                    flush=True,
                )
        finally:
            if not args.store_dir:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
