"""Stages of block Krylov (``sketch.passes > 1`` or ``adaptive``): waves, plans, reduction.

- ``create_krylov_wave`` (wave 0): ``V_0`` = the first ``wave_width`` test vectors;
- ``plan_krylov_wave`` (wave ``j ≥ 1``, a checkpoint): from the measured waves ``0..j−1``, the
  plan of block ``j`` (:func:`hessketch.krylov.plan_next_block`), the new blocks of the small
  matrices ``G, T, K`` (:func:`hessketch.ritz.wave_blocks`) and, from all of them, the estimated
  certificate and the decision (:func:`hessketch.adaptive.decide`): go on, or stop because the
  target is met, the budget ``sketch.max_hvps`` is spent or the space is invariant. With a fixed
  ``sketch.passes`` the rules fix the count; the plan still records the estimate;
- ``create_krylov_wave`` (wave ``j ≥ 1``): ``V_j`` from the plan, one streamed pass;
- ``reduce_krylov``: Rayleigh–Ritz over all waves, eigenpairs, report and certificate.

A plan is ``plan~<j>.json`` (the decision, the ids of the waves it was computed from, the
SHA-256 of its arrays) beside ``plan~<j>.npz`` (the arrays); every reader checks both against
the waves it reads.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hessketch.adaptive import Decision, Target, decide
from hessketch.certificate import DEFAULT_SPACE_TOLERANCE, FLOAT32_ROUNDING, ritz_certificate
from hessketch.errors import IntegrityError, SketchStoreError
from hessketch.krylov import BlockPlan, plan_next_block, write_next_block
from hessketch.pipeline.common import EigenpairWriter
from hessketch.pipeline.hessian_at_step import (
    HessianSpec,
    check_store_is_current,
    hessian_provenance,
)
from hessketch.pipeline.waves import open_waves, product_dtype, write_certificate
from hessketch.provenance import hessian_facts
from hessketch.ritz import ProjectedMatrices, rayleigh_ritz, wave_blocks
from hessketch.sketch import SketchSpec
from hessketch.store import TALL_ROW_CHUNK, read_json, write_json_atomic
from hessketch.trajectory import Trajectory, param_hash
from hessketch.wavestore import WaveSpec, WaveStore, ZarrBasis, create_wave_store

__all__ = ["create_krylov_wave", "plan_krylov_wave", "reduce_krylov"]

log = logging.getLogger(__name__)

_BLOCKS = ("gram", "proj", "proj_row", "images")


def _sketch_spec(dim: int, sketch: dict[str, Any]) -> SketchSpec:
    keys = ("k", "s", "seed", "test_matrix", "block_size")
    return SketchSpec(dim=dim, **{key: sketch[key] for key in keys})


def _fix(path: str | Path) -> str:
    return f"regenerate it: snakemake --forcerun {path}"


def _read_plan(path: str | Path, basis: ZarrBasis) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A plan and its arrays, checked against its digest and the waves ``basis`` holds."""
    plan = read_json(path, "Krylov plan")
    arrays_path = Path(path).with_suffix(".npz")
    if not arrays_path.is_file():
        raise IntegrityError(
            f"Krylov plan {path}: its arrays {arrays_path} are missing; {_fix(path)}"
        )
    if hashlib.sha256(arrays_path.read_bytes()).hexdigest() != plan["arrays_sha256"]:
        raise IntegrityError(
            f"Krylov plan {path}: {arrays_path} does not match the SHA-256 the plan records "
            f"(edited, damaged or from another plan); {_fix(path)}"
        )
    ids = [s.store_id for s in basis.stores[: len(plan["waves"])]]
    if plan["waves"] != ids:
        raise SketchStoreError(
            f"Krylov plan {path} was computed from waves {plan['waves']}, but the waves are now "
            f"{ids}: it is stale; {_fix(path)}"
        )
    with np.load(arrays_path, allow_pickle=False) as data:
        return plan, {name: data[name] for name in data.files}


def _write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` that is a pure function of ``arrays`` (no time stamps), atomically."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                archive.writestr(
                    zipfile.ZipInfo(f"{name}.npy", (1980, 1, 1, 0, 0, 0)), buffer.getvalue()
                )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _target(sketch: dict[str, Any], certificate: dict[str, Any]) -> Target | None:
    if sketch["passes"] != "adaptive":
        return None
    return Target.parse(
        certificate.get("target"),
        sketch["k"],
        sketch["max_hvps"],
        certificate.get("space_tolerance", DEFAULT_SPACE_TOLERANCE),
    )


def plan_krylov_wave(
    *,
    sketch: dict[str, Any],
    certificate: dict[str, Any],
    wave: int,
    store_paths: list[str | Path],
    receipt_paths: list[list[str | Path]],
    plan_paths: list[str | Path],
    plan_path: str | Path,
) -> None:
    """Plan wave ``wave`` from the measured waves before it, and decide whether to measure it.

    Args:
        sketch: ``k``, ``s``, ``passes`` (``"adaptive"``, or ``"fixed"``: the rules fix the
            count, the plan only records the estimate), ``wave_width``, ``max_hvps`` and the
            test-matrix keys.
        certificate: ``target``, ``space_tolerance``, ``product_error``.
        wave: the wave planned (``≥ 1``).
        store_paths: the stores of waves ``0..wave−1``.
        receipt_paths: their receipts, one list per wave.
        plan_paths: the plans of waves ``1..wave−1`` (their arrays beside them).
        plan_path: where this plan goes (``.json``; the arrays to ``.npz`` beside it).
    """
    basis = open_waves(store_paths, receipt_paths)
    projected = ProjectedMatrices()
    for path in plan_paths:
        _, arrays = _read_plan(path, basis)
        projected.extend(*(torch.from_numpy(arrays[name]) for name in _BLOCKS))
    blocks = wave_blocks(basis)
    projected.extend(*blocks)
    plan = plan_next_block(basis)
    hvps = sum(basis.widths())
    target = _target(sketch, certificate)
    dtype = product_dtype(basis.stores[0].provenance)
    estimate = decide(
        projected.ritz(),
        target or Target(sketch["k"], 10**12, certificate.get("space_tolerance", 0.1)),
        kept=sketch["k"],
        hvps=hvps,
        planned_width=plan.width,
        product_dtype=dtype,
        product_error=certificate.get("product_error"),
    )
    if target is None:  # a fixed number of waves: the rules know how many; only the estimate
        reason = "continue" if plan.width else "invariant space"
        estimate = Decision(
            reason,
            hvps,
            estimate.basis_dim,
            plan.width if reason == "continue" else 0,
            estimate.bound,
            estimate.space_k,
        )
    arrays_path = Path(plan_path).with_suffix(".npz")
    arrays_path.parent.mkdir(parents=True, exist_ok=True)
    _write_arrays(
        arrays_path,
        {
            "coef": plan.coef.numpy(),
            "transform": plan.transform.numpy(),
            **{name: b.numpy() for name, b in zip(_BLOCKS, blocks, strict=True)},
        },
    )
    record = {
        "wave": wave,
        "waves": [s.store_id for s in basis.stores],
        "arrays_sha256": hashlib.sha256(arrays_path.read_bytes()).hexdigest(),
        "mode": "adaptive" if target else "passes",
        "target": {
            "k": target.k,
            "max_hvps": target.max_hvps,
            "space_tolerance": target.space_tolerance,
        }
        if target
        else None,
        "decision": estimate.to_dict(),
        "step": basis.stores[0].provenance.get("step"),
        "identity": hessian_facts(basis.stores[0].provenance),
    }
    write_json_atomic(plan_path, record)
    log.info(
        "wave %d: %d HVPs so far, estimated bound %.3g at k=%d, space_k ~ %d: %s",
        wave,
        hvps,
        estimate.bound,
        target.k if target else sketch["k"],
        estimate.space_k,
        estimate.reason,
    )


def create_krylov_wave(
    *,
    trajectory_path: str | Path,
    step: int,
    sketch: dict[str, Any],
    wave: int,
    previous_stores: list[str | Path],
    previous_receipts: list[list[str | Path]],
    store_path: str | Path,
    hessian: HessianSpec,
    plan_path: str | Path | None = None,
) -> None:
    """Create wave ``wave`` of the block Krylov iteration (see the module docstring).

    Wave 0 records the parameter hash and the checksum of the Hessian set's points as read now;
    later waves inherit them from wave 0, and every shard compares them with what it reads.
    Wave ``j ≥ 1`` is formed from its plan (``plan_path``), which must say to go on.
    """
    flat = Trajectory.open(trajectory_path).params(step)
    spec = _sketch_spec(flat.numel(), sketch)
    if wave == 0:
        provenance = {
            **hessian_provenance(trajectory_path, step, hessian),
            "hessian": hessian.definition(),
        }
        matrix, width = spec.right(), sketch.get("wave_width") or spec.s
        width = min(width, sketch.get("max_hvps") or width)

        def fill_start(write: Any) -> None:
            # chunk by chunk: memory bounded independently of D
            for r in range(0, spec.dim, TALL_ROW_CHUNK):
                rows = slice(r, min(r + TALL_ROW_CHUNK, spec.dim))
                for a in range(0, width, spec.block_size):
                    b = min(a + spec.block_size, width)
                    write(rows, slice(a, b), matrix.rows(a, b, dtype=torch.float64, coords=rows))

        wave_spec = WaveSpec(spec.dim, width, spec.block_size)
        create_wave_store(
            store_path, wave_spec, provenance, fill_start, {"wave": 0, "previous": []}
        )
        log.info("wave 0: the first %d %s test vectors (D=%d)", width, spec.test_matrix, spec.dim)
        return
    if plan_path is None:
        raise ValueError(f"wave {wave} needs its plan")
    basis = open_waves(previous_stores, previous_receipts)
    provenance = basis.stores[0].provenance
    if provenance["param_hash"] != param_hash(flat):
        raise SketchStoreError(
            f"{previous_stores[0]} is for other parameters than step {step} of {trajectory_path}"
        )
    record, arrays = _read_plan(plan_path, basis)
    decision = record["decision"]
    if decision["reason"] != "continue" or len(record["waves"]) != wave:
        raise SketchStoreError(
            f"Krylov plan {plan_path} says to stop after {len(record['waves'])} waves "
            f"({decision['reason']}): there is no wave {wave} to create"
        )
    width = decision["next_width"]
    plan = BlockPlan(
        torch.from_numpy(arrays["coef"]), torch.from_numpy(arrays["transform"])[:, :width]
    )

    def fill(write: Any) -> None:
        write_next_block(basis, plan, lambda rows, values: write(rows, slice(None), values))

    create_wave_store(
        store_path,
        WaveSpec(spec.dim, width, spec.block_size),
        provenance,
        fill,
        {"wave": wave, "previous": [s.store_id for s in basis.stores]},
    )


def reduce_krylov(
    *,
    store_paths: list[str | Path],
    receipt_paths: list[list[str | Path]],
    k: int,
    tolerance: float,
    eigenpairs_path: str | Path,
    report_path: str | Path,
    certificate_path: str | Path,
    certificate_table_path: str | Path,
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    product_error: float | None = None,
    plan_paths: list[str | Path] | None = None,
    trajectory_path: str | Path | None = None,
    step: int | None = None,
    hessian: HessianSpec | None = None,
) -> None:
    """Rayleigh–Ritz over all measured waves: eigenpairs, report and (free) certificate.

    With the plans (``plan_paths``, the last one the decision to stop for an adaptive run),
    the report records why the waves stopped and whether the measured certificate meets the
    target the estimate judged. With ``trajectory_path``, ``step`` and ``hessian``, the first
    wave is first checked to be of that Hessian as it is now (a stale wave is refused).
    """
    started = time.perf_counter()
    if trajectory_path is not None and step is not None and hessian is not None:
        provenance = WaveStore.open(store_paths[0]).provenance
        check_store_is_current(provenance, store_paths[0], trajectory_path, step, hessian)
    basis = open_waves(store_paths, receipt_paths)
    first = basis.stores[0]
    attrs = {
        "method": "sketched",
        "algorithm": "block-krylov",
        "provenance": first.provenance,
        "waves": [s.store_id for s in basis.stores],
    }
    with EigenpairWriter(eigenpairs_path, basis.dim, k, attrs) as writer:
        ritz = rayleigh_ritz(basis, k, on_vector_rows=writer.write_rows)
        writer.close(ritz.eigenvalues)
    certificate = ritz_certificate(
        ritz,
        tolerance=tolerance,
        space_tolerance=space_tolerance,
        product_dtype=product_dtype(first.provenance),
        product_error=product_error,
        rounding=FLOAT32_ROUNDING,  # the eigenpair file stores float32 vectors
    )
    receipts = [read_json(r, "receipt") for wave in receipt_paths for r in wave]
    plans = [_read_plan(path, basis)[0] for path in plan_paths or []]
    report = {
        "algorithm": "block-krylov",
        "k": k,
        "dim": basis.dim,
        "passes": len(store_paths),
        "basis_dim": ritz.basis_dim,
        "wave_widths": basis.widths(),
        "hvps": sum(r["hvps"] for r in receipts),
        "measure_seconds": sum(r["seconds"] for r in receipts),
        "reduce_seconds": time.perf_counter() - started,
        "trusted_k": certificate.trusted_k,
        "space_k": certificate.space_k,
        "verdict": certificate.verdict,
        "history": [p["decision"] for p in plans],
    }
    if plans and plans[-1]["mode"] == "adaptive":
        last, target = plans[-1], plans[-1]["target"]
        if len(last["waves"]) != len(store_paths):
            raise SketchStoreError(
                f"the last Krylov plan {plan_paths[-1]} decided after {len(last['waves'])} "  # type: ignore[index]
                f"waves, but {len(store_paths)} are reduced"
            )
        met = bool(certificate.space_bounds[target["k"] - 1] <= target["space_tolerance"])
        report["adaptive"] = {
            **target,
            "stopped": last["decision"]["reason"],
            "target_met": met,
            "estimate_met": last["decision"]["reason"] == "target met",
        }
        level = logging.INFO if met else logging.WARNING
        log.log(
            level,
            "adaptive Krylov stopped (%s) after %d HVPs: the top-%d space is %s",
            last["decision"]["reason"],
            report["hvps"],
            target["k"],
            "certified"
            if met
            else f"NOT certified (bound {float(certificate.space_bounds[target['k'] - 1]):.3g})",
        )
    report["identity"] = {**hessian_facts(first.provenance), "method": "sketched"}
    write_json_atomic(report_path, report)
    step = first.provenance.get("step")
    identity = {**hessian_facts(first.provenance), "method": "sketched"}
    write_certificate(
        certificate, certificate_path, certificate_table_path, {"step": step, "identity": identity}
    )
