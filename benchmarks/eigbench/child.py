"""One method on one Hessian, in this process: setup, then the timed run, then checks.

The parent starts a fresh interpreter per method so that peak memory is the method's own:
after the setup, ``/proc/self/clear_refs`` is reset (writing ``5`` sets the high-water mark
``VmHWM`` to the current resident size), and ``VmHWM`` is read right after the run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eigbench.methods import METHODS, Unavailable
from eigbench.problems import PROBLEMS, trained_params

log = logging.getLogger(__name__)

# Eigenvectors are handed back in float64 when they come so and are small (the exact
# reference); large ones in float32, ample for overlaps.
MAX_FLOAT64_BYTES = 256 * 2**20


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def run_job(job_dir: Path) -> None:
    """Run the job described by ``job_dir/job.json``; write ``result.json`` and the pairs."""
    job = json.loads((job_dir / "job.json").read_text())
    torch.set_num_threads(job["threads"])
    problem = PROBLEMS[job["problem"]]
    flat = trained_params(Path(job["out"]), problem)[job["step"]]
    result: dict[str, Any] = {"threads": torch.get_num_threads()}
    start = time.perf_counter()
    try:
        prepared = METHODS[job["method"]](problem, flat, job["config"])
    except Unavailable as err:
        result["unavailable"] = str(err)
        (job_dir / "result.json").write_text(json.dumps(result))
        return
    result["setup_s"] = time.perf_counter() - start
    _reset_peak_rss()
    result["base_rss_mb"] = _status_mb("VmRSS")
    result["load_before"] = _load_average()
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    outcome = prepared.run()
    result["wall_s"] = time.perf_counter() - start
    # CPU seconds per wall second: near the thread count on an otherwise idle machine, lower
    # when other processes took cores away during the run.
    result["cpu_s"] = _cpu_seconds() - cpu_start
    result["load_after"] = _load_average()
    result["peak_rss_mb"] = _status_mb("VmHWM")
    result["hvps"] = prepared.hvps()
    result["info"] = outcome.info
    result["check"] = prepared.check(outcome)
    np.save(job_dir / "values.npy", outcome.values.detach().to(torch.float64).numpy())
    vectors = outcome.vectors.detach()
    if vectors.dtype != torch.float64 or vectors.numel() * 8 > MAX_FLOAT64_BYTES:
        vectors = vectors.to(torch.float32)
    np.save(job_dir / "vectors.npy", vectors.numpy())
    (job_dir / "result.json").write_text(json.dumps(result))
    log.info("%s done: %.1f s, %d HVPs", job["method"], result["wall_s"], result["hvps"])


def blas_env(method: str) -> dict[str, str]:
    """Environment of a method's process: ARPACK gets one BLAS thread (torch keeps its own).

    With both pools at two threads on two cores, eigsh oversubscribes and runs 2-3x slower.
    """
    env = dict(os.environ)
    if method.startswith("eigsh"):
        env["OPENBLAS_NUM_THREADS"] = "1"  # scipy's OpenBLAS; torch sets its own pool
    return env
