"""Top Hessian eigenpairs: hessketch against its peers on the same operator and data.

Usage (in the benchmark environment, `make bench-setup`):
    .venv-bench/bin/python benchmarks/bench_eigensolvers.py                  # both problems
    .venv-bench/bin/python benchmarks/bench_eigensolvers.py --problems mlp16 --steps 0

Every method runs in its own process (wall time of the method alone, its Hessian-vector
products, its peak RSS) and is scored against the problem's reference, computed in the
same run: the exact dense float64 Hessian for mlp16, ARPACK for mlp1m. Results go to
`<out>/<problem>.tsv` and are printed as markdown. Only trained parameters are cached
(`<out>/params/`), plus the reference eigenpairs (`<out>/reference/`), which are reused only
with `--reuse-reference` (development runs; the printed tables then have no reference row).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from eigbench.child import blas_env, run_job
from eigbench.problems import ALL_METHODS, PROBLEMS, Problem, params_path, trained_params
from eigbench.report import certificate_label, config_label, markdown, tsv_rows
from eigbench.scoring import score

from hessketch.metrics import chance_overlap, magnitude_order
from hessketch.pipeline.common import write_table
from hessketch.testmatrices import TEST_MATRIX_KINDS

log = logging.getLogger("bench_eigensolvers")
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=sorted(PROBLEMS))
    p.add_argument("--steps", nargs="+", type=int, help="subset of each problem's steps")
    p.add_argument("--methods", nargs="+", choices=ALL_METHODS, help="default: per problem")
    p.add_argument("--k", type=int, help="override the problem's k (development runs)")
    p.add_argument("--s", type=int, help="override the problem's s (development runs)")
    p.add_argument("--test-matrices", nargs="+", help=f"default: all of {TEST_MATRIX_KINDS}")
    p.add_argument("--passes", nargs="+", type=int, help="iterative hessketch passes")
    p.add_argument("--krylov-s", nargs="+", type=int, help="iterative hessketch HVPs per pass")
    p.add_argument(
        "--krylov-width",
        nargs="+",
        type=int,
        help="iterative hessketch: HVPs per pass as decompose(width=...), with s = the\n"
        "problem's s (default: the problem's widths unless --krylov-s is given)",
    )
    p.add_argument("--no-certify", action="store_true", help="decompose(..., certify=False)")
    p.add_argument("--eigsh-tol", type=float, default=1e-6)
    p.add_argument("--eigsh-interfaces", nargs="+", choices=["matvec", "matmat"])
    p.add_argument("--skerch-noise", default="rademacher")
    p.add_argument("--skerch-recovery", default="hmt")
    p.add_argument("--pyhessian-top", type=int, default=10)
    p.add_argument("--pyhessian-iters", type=int, default=100)
    p.add_argument("--pyhessian-tol", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--threads", type=int, default=2, help="torch threads per method")
    p.add_argument("--timeout", type=float, help="seconds per method (default: none)")
    p.add_argument(
        "--max-wait",
        type=float,
        default=0.0,
        help="before each method, wait up to this many seconds for other processes to leave\n"
        "the cores idle (a shared machine); 0: do not wait",
    )
    p.add_argument("--reuse-reference", action="store_true", help="development runs only")
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def method_configs(method: str, problem: Problem, args: argparse.Namespace) -> list[dict]:
    """The configurations of ``method`` to run on ``problem``."""
    k, s, seed = args.k or problem.k, args.s or problem.s, args.seed
    certify = not args.no_certify
    if method == "exact":
        return [{"keep": k}] if problem.dim <= 20_000 else []
    if method == "eigsh":
        ifaces = args.eigsh_interfaces or problem.eigsh_interfaces
        return [{"k": k, "tol": args.eigsh_tol, "interface": i, "seed": seed} for i in ifaces]
    if method == "eigsh-curvlinops":
        return [{"k": k, "tol": args.eigsh_tol, "seed": seed}]
    if method == "hessketch":
        kinds = args.test_matrices or TEST_MATRIX_KINDS
        return [
            {"k": k, "s": s, "passes": 1, "test_matrix": t, "seed": seed, "certify": certify}
            for t in kinds
        ]
    if method == "hessketch-iter":
        base = {"k": k, "test_matrix": "ssrft", "seed": seed, "certify": certify}
        widths = args.krylov_width or ([] if args.krylov_s else problem.krylov_widths)
        if widths:
            return [
                {**base, "s": s, "passes": p, "width": w}
                for p in args.passes or problem.passes
                for w in widths
            ]
        return [
            {**base, "s": ks, "passes": p}
            for p in args.passes or problem.passes
            for ks in args.krylov_s or problem.krylov_s
        ]
    if method == "skerch":
        return [
            {"outer": k, "noise": args.skerch_noise, "recovery": args.skerch_recovery, "seed": seed}
        ]
    if method == "pyhessian":
        return [
            {
                "top_n": args.pyhessian_top,
                "max_iter": args.pyhessian_iters,
                "tol": args.pyhessian_tol,
                "seed": seed,
            }
        ]
    raise ValueError(method)


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on this machine (all processes) over the next ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1)


def wait_for_idle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > threshold and time.monotonic() < deadline:
        log.info("machine busy (%.1f cores in use by others); waiting", busy)
        time.sleep(10)
        busy = busy_cores()
    return busy


def run_method(problem: Problem, step: int, method: str, config: dict, args) -> dict[str, Any]:
    """Run one method in a fresh process; its result record and eigenpairs (or a failure)."""
    busy_before = wait_for_idle(args.max_wait) if args.max_wait > 0 else None
    job_dir = Path(tempfile.mkdtemp(prefix=f"bench-{problem.name}-{method}-"))
    job = {
        "problem": problem.name,
        "step": step,
        "method": method,
        "config": config,
        "threads": args.threads,
        "out": str(args.out),
    }
    (job_dir / "job.json").write_text(json.dumps(job))
    log.info("%s step %d: %s %s ...", problem.name, step, method, config_label(method, config))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(job_dir)]
    with open(job_dir / "log", "w") as log_file:
        try:
            proc = subprocess.run(
                cmd,
                env=blas_env(method),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
            )
            failed = proc.returncode != 0 and f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            failed = f"timed out after {args.timeout:g} s"
    record: dict[str, Any] = {"job_dir": job_dir, "busy_cores_before": busy_before}
    result_path = job_dir / "result.json"
    if failed or not result_path.is_file():
        tail = (job_dir / "log").read_text().strip().splitlines()[-1:] or ["no output"]
        record["status"] = f"{failed or 'failed'}: {tail[0][:200]}"
        log.warning("%s: %s (log: %s)", method, record["status"], job_dir / "log")
        return record
    record.update(json.loads(result_path.read_text()))
    if "unavailable" in record:
        record["status"] = f"not run: {record['unavailable']}"
        return record
    record["status"] = "ok"
    record["values"] = torch.from_numpy(np.load(job_dir / "values.npy"))
    record["vectors"] = torch.from_numpy(np.load(job_dir / "vectors.npy"))
    log.info(
        "  %.1f s, %d HVPs, peak RSS %.0f MB",
        record["wall_s"],
        record["hvps"],
        record["peak_rss_mb"],
    )
    return record


def reference_path(out: Path, problem: Problem, step: int, config: dict) -> Path:
    key = {"params": problem.cache_key(), "step": step, "config": config}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return out / "reference" / f"{problem.name}-step{step}-{problem.reference}-{digest}"


def save_reference(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "values.npy", record["values"].numpy())
    np.save(tmp / "vectors.npy", record["vectors"].numpy())
    meta = {k: record[k] for k in ("wall_s", "hvps", "check", "info")}
    (tmp / "meta.json").write_text(json.dumps({**meta, "date": time.strftime("%Y-%m-%d %H:%M")}))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_reference(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    values = torch.from_numpy(np.load(path / "values.npy"))
    vectors = torch.from_numpy(np.load(path / "vectors.npy"))
    return values, vectors, json.loads((path / "meta.json").read_text())


def table_row(problem: Problem, step: int, method: str, config: dict, rec: dict) -> dict:
    row: dict[str, Any] = {
        "problem": problem.name,
        "step": step,
        "method": method,
        "config": config_label(method, config),
        "status": rec["status"],
    }
    for key in ("wall_s", "hvps", "peak_rss_mb", "base_rss_mb", "setup_s", "cpu_s"):
        row[key] = rec.get(key)
    for key in ("busy_cores_before", "load_before", "load_after"):
        row[key] = rec.get(key)
    info = rec.get("info", {})
    row["certificate"] = certificate_label(info)
    row["trusted_k"] = info.get("trusted_k")
    for key, value in {**info, **rec.get("check", {})}.items():
        if key == "trusted_k":
            continue
        if isinstance(value, dict):  # e.g. eigsh's calls per interface, decompose's HVPs
            row.update({f"{key}_{sub}": v for sub, v in value.items()})
        else:
            row[key] = value
    return row


def run_step(problem: Problem, step: int, theta: torch.Tensor, args) -> list[dict[str, Any]]:
    methods = args.methods or problem.methods
    ref_config = method_configs(problem.reference, problem, args)[0]
    ref_path = reference_path(args.out, problem, step, ref_config)
    mask_ks = tuple(k for k in problem.mask_ks if k <= (args.k or problem.k))
    rows: list[dict[str, Any]] = []
    if args.reuse_reference and ref_path.is_dir():
        ref_values, ref_vectors, meta = load_reference(ref_path)
        log.info("reference reused from %s (computed %s), not rerun", ref_path, meta["date"])
        print(
            f"\nNote: {problem.name} step {step}: reference {problem.reference} reused from "
            f"{ref_path} (computed {meta['date']}); it is not timed in this run."
        )
    else:
        rec = run_method(problem, step, problem.reference, ref_config, args)
        if rec["status"] != "ok":
            raise SystemExit(f"the reference {problem.reference} failed: {rec['status']}")
        save_reference(ref_path, rec)
        ref_values, ref_vectors = rec["values"], rec["vectors"]
        row = table_row(problem, step, problem.reference, ref_config, rec)
        rows.append(
            {
                **row,
                "is_reference": True,
                **score((ref_values, ref_vectors), (ref_values, ref_vectors), theta, mask_ks),
            }
        )
        shutil.rmtree(rec["job_dir"], ignore_errors=True)
    for method in [m for m in ALL_METHODS if m in methods]:
        for config in method_configs(method, problem, args):
            if method == problem.reference and config == ref_config:
                continue
            rec = run_method(problem, step, method, config, args)
            row = table_row(problem, step, method, config, rec)
            if rec["status"] == "ok":
                row.update(
                    score(
                        (ref_values, ref_vectors), (rec["values"], rec["vectors"]), theta, mask_ks
                    )
                )
            rows.append(row)
            shutil.rmtree(rec["job_dir"], ignore_errors=True)
    for k in mask_ks:
        ref_mask = rows[0].get(f"mask_overlap_ref_k{k}") if rows else None
        if ref_mask is None:
            ref_mask = score((ref_values, ref_vectors), (ref_values, ref_vectors), theta, (k,))[
                f"mask_overlap_k{k}"
            ]
        print(
            f"{problem.name} step {step}: reference mask overlap at k={k}: {ref_mask:.4g} "
            f"(chance k/D = {chance_overlap(k, problem.dim):.3g})"
        )
    return rows


def machine(threads: int) -> str:
    """Date and machine, for the table's caption."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
        platform.processor(),
    )
    return (
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), torch "
        f"{torch.__version__}, {threads} torch threads per method"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.child:
        run_job(args.child)
        return
    args.out = args.out.resolve()
    torch.set_num_threads(args.threads)
    for name in args.problems:
        problem = PROBLEMS[name]
        steps = [t for t in problem.steps if args.steps is None or t in args.steps]
        params = trained_params(args.out, problem)
        log.info("%s: parameters %s", name, params_path(args.out, problem))
        rows: list[dict[str, Any]] = []
        for step in steps:
            rows += run_step(problem, step, magnitude_order(params[step]), args)
        write_table(args.out / f"{name}.tsv", tsv_rows(rows))
        mask_ks = tuple(k for k in problem.mask_ks if k <= (args.k or problem.k))
        caption = f"{name} (D = {problem.dim:,}), reference: {problem.reference}"
        print(f"\n### {caption}; {machine(args.threads)}\n")
        print(markdown(problem, rows, mask_ks))
        print(f"\n(all numbers: {args.out / (name + '.tsv')})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
