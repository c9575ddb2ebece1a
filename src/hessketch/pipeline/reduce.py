"""Stage ``reduce_sketch``: verify the shards' receipts, then SEIGH out of core."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hessketch.metrics import aposteriori_tail_bounds
from hessketch.pipeline.common import EigenpairWriter
from hessketch.pipeline.hessian_at_step import HessianSpec, check_store_is_current
from hessketch.provenance import hessian_facts
from hessketch.seigh import reduce_sketch
from hessketch.store import (
    ZarrSketch,
    check_digests,
    read_json,
    verify_receipts,
    write_json_atomic,
)

__all__ = ["reduce_sketch_store"]

log = logging.getLogger(__name__)


def _load_receipts(paths: list[str | Path]) -> list[tuple[str, dict]]:
    return [(str(path), read_json(path, "receipt")) for path in paths]


def reduce_sketch_store(
    *,
    store_path: str | Path,
    receipt_paths: list[str | Path],
    eigenpairs_path: str | Path,
    report_path: str | Path,
    trajectory_path: str | Path | None = None,
    step: int | None = None,
    hessian: HessianSpec | None = None,
) -> None:
    """Check every receipt against the store, reduce, and write eigenpairs and a report.

    With ``trajectory_path``, ``step`` and ``hessian``, the store is first checked to be of
    that Hessian as it is now (:func:`check_store_is_current`): a stale store copied in is
    refused naming it.
    """
    started = time.perf_counter()
    sketch = ZarrSketch.open(store_path)
    if trajectory_path is not None and step is not None and hessian is not None:
        check_store_is_current(sketch.provenance, store_path, trajectory_path, step, hessian)
    receipts = _load_receipts(receipt_paths)
    digests = verify_receipts(sketch, receipts)
    spec = sketch.spec
    hashers: dict[str, Any] = {}
    tall = {name: sketch.column_ranges(name) for name in ("Y", "HOmega")}

    def hash_rows(rows: slice, y: torch.Tensor, h_omega: torch.Tensor | None) -> None:
        for name, values in (("Y", y), ("HOmega", h_omega)):
            if values is None:
                continue
            bad = (~torch.isfinite(values).all(0)).nonzero()
            if len(bad):  # a missing chunk reads as NaN: name it and its shard
                column = int(bad[0])
                cols = next((a, b) for a, b in tall[name] if a <= column < b)
                raise sketch.damaged(name, rows, cols, f"has non-finite values (column {column})")
            data = values.numpy().astype(np.float32)
            for a, b in tall[name]:
                hashers.setdefault(f"{name}:{a}", hashlib.sha256()).update(
                    np.ascontiguousarray(data[:, a:b]).tobytes()
                )

    attrs = {"method": "sketched", "provenance": sketch.provenance, "spec": spec.to_dict()}
    with EigenpairWriter(eigenpairs_path, spec.dim, spec.k, attrs) as writer:
        result = reduce_sketch(
            sketch,
            on_y_rows=hash_rows,
            after_pass1=lambda: check_digests(sketch, digests, hashers),
            on_eigenvector_rows=writer.write_rows,
        )
        writer.close(result.eigenvalues, frobenius_sq_estimate=result.frobenius_sq)
    report = {
        "k": spec.k,
        "s": spec.s,
        "dim": spec.dim,
        "test_matrix": spec.test_matrix,
        "hvps": sum(r["hvps"] for _, r in receipts),
        "measure_seconds": sum(r["seconds"] for _, r in receipts),
        "shards": [
            {k: r[k] for k in ("shard", "hvps", "seconds", "device", "host")} for _, r in receipts
        ],
        "reduce_seconds": time.perf_counter() - started,
        "probes": result.probes,
        "frobenius_sq_estimate": result.frobenius_sq,
        "frobenius_sq_probes": result.frobenius_sq_probes,
        "residual_sq_estimate": result.residual_sq,
        "identity": {**hessian_facts(sketch.provenance), "method": "sketched"},
    }
    if result.probes and result.frobenius_sq_probes:
        # Relative to the probes' own estimate of ‖H‖_F², not to Σλ̂² + residual: a sketch
        # farther from H than the zero matrix must show an error above 1, not below.
        report["relative_error_estimate"] = (result.residual_sq / result.frobenius_sq_probes) ** 0.5
        p_under, p_over = aposteriori_tail_bounds(result.probes, 2.0)
        report["p_estimate_below_half"] = p_under
        report["p_estimate_above_double"] = p_over
    write_json_atomic(report_path, report)
    log.info("reduced %s: top eigenvalues %s", store_path, result.eigenvalues[:5].tolist())
