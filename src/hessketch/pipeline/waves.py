"""Stages of the waves: block Krylov (``sketch.passes > 1``) and the verification wave.

- ``create_krylov_wave`` (wave 0): ``V_0`` = the first ``s`` test vectors;
- ``create_krylov_wave`` (wave ``j ≥ 1``): ``V_j`` from the measured waves ``0..j−1``
  (:func:`hessketch.krylov.next_block`, streamed);
- ``reduce_krylov``: Rayleigh–Ritz over all waves, eigenpairs, report and certificate;
- ``create_verification_wave``: ``V`` = the one-pass eigenvectors;
- ``certify_eigenpairs``: residuals and Rayleigh quotients from the verification wave.

Waves are measured by ``measure_wave_shard`` (:mod:`hessketch.pipeline.measure`). Every stage
verifies the receipts, the chain of wave stores (each records the ids of the waves it was built
from) and the checksums of everything it reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hessketch.certificate import (
    Certificate,
    certificate_from_sums,
    probe_checks,
    residuals_from_images,
    ritz_certificate,
)
from hessketch.errors import NumericalError, SketchStoreError
from hessketch.krylov import plan_next_block, row_blocks, write_next_block
from hessketch.pipeline.common import EigenpairWriter, open_eigenpairs, write_table
from hessketch.pipeline.hessian_at_step import HessianSpec, hessian_provenance
from hessketch.ritz import rayleigh_ritz
from hessketch.sketch import SketchSpec
from hessketch.store import TALL_ROW_CHUNK, read_json, verify_receipts, write_json_atomic
from hessketch.trajectory import Trajectory, param_hash
from hessketch.wavestore import StreamingDigests, WaveSpec, WaveStore, ZarrBasis, create_wave_store

__all__ = [
    "certify_eigenpairs",
    "create_krylov_wave",
    "create_verification_wave",
    "reduce_krylov",
]

log = logging.getLogger(__name__)


def _load_json(path: str | Path, what: str) -> dict[str, Any]:
    return read_json(path, what)


def _sketch_spec(dim: int, sketch: dict[str, Any]) -> SketchSpec:
    keys = ("k", "s", "seed", "test_matrix", "block_size")
    return SketchSpec(dim=dim, **{key: sketch[key] for key in keys})


def _open_waves(store_paths: list[str | Path], receipt_paths: list[list[str | Path]]) -> ZarrBasis:
    """Open measured waves, verify their receipts and their chain, check every checksum."""
    stores, digests = [], []
    for i, (path, receipts) in enumerate(zip(store_paths, receipt_paths, strict=True)):
        store = WaveStore.open(path)
        expected_chain = [s.store_id for s in stores]
        if store.attrs.get("previous", []) != expected_chain:
            raise SketchStoreError(
                f"{path} (wave {i}) was built from waves {store.attrs.get('previous')}, but the "
                f"waves before it are now {expected_chain}: it is stale; re-create it"
            )
        if stores and store.provenance["param_hash"] != stores[0].provenance["param_hash"]:
            raise SketchStoreError(f"{path} is for other parameters than {stores[0].path}")
        loaded = [(str(r), _load_json(r, "receipt")) for r in receipts]
        digests.append(verify_receipts(store, loaded))  # type: ignore[arg-type]
        stores.append(store)
    basis = ZarrBasis(stores, digests)
    basis.start_check()
    for rows in row_blocks(basis.dim, 2 * sum(basis.widths())):
        for j in range(len(stores)):
            basis.read(j, "V", rows)
            basis.read(j, "HV", rows)
    basis.check()
    return basis


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
) -> None:
    """Create wave ``wave`` of the block Krylov iteration (see the module docstring).

    Wave 0 records the parameter hash and the checksum of the Hessian set's points as read now;
    later waves inherit them from wave 0, and every shard compares them with what it reads.
    """
    flat = Trajectory.open(trajectory_path).params(step)
    spec = _sketch_spec(flat.numel(), sketch)
    if wave == 0:
        provenance = {
            **hessian_provenance(trajectory_path, step, hessian),
            "hessian": hessian.definition(),
        }
        matrix, width = spec.right(), sketch.get("wave_width") or spec.s

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
    basis = _open_waves(previous_stores, previous_receipts)
    provenance = basis.stores[0].provenance
    if provenance["param_hash"] != param_hash(flat):
        raise SketchStoreError(
            f"{previous_stores[0]} is for other parameters than step {step} of {trajectory_path}"
        )
    plan = plan_next_block(basis)
    if plan.width == 0:
        raise NumericalError(
            f"the Krylov space is invariant after {wave} waves (D={spec.dim}): there is nothing "
            f"new to measure; use sketch.passes <= {wave}"
        )

    def fill(write: Any) -> None:
        write_next_block(basis, plan, lambda rows, values: write(rows, slice(None), values))

    create_wave_store(
        store_path,
        WaveSpec(spec.dim, plan.width, spec.block_size),
        provenance,
        fill,
        {"wave": wave, "previous": [s.store_id for s in basis.stores]},
    )


def _write_certificate(
    certificate: Certificate, json_path: str | Path, table_path: str | Path, extra: dict
) -> None:
    write_json_atomic(json_path, {**extra, **certificate.to_dict()})
    write_table(table_path, certificate.rows())
    level = (
        logging.INFO if certificate.trusted_k == len(certificate.eigenvalues) else logging.WARNING
    )
    log.log(level, "step %s: %s", extra.get("step"), certificate.verdict)


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
) -> None:
    """Rayleigh–Ritz over all measured waves: eigenpairs, report and (free) certificate."""
    started = time.perf_counter()
    basis = _open_waves(store_paths, receipt_paths)
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
    certificate = ritz_certificate(ritz, tolerance=tolerance)
    receipts = [_load_json(r, "receipt") for wave in receipt_paths for r in wave]
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
        "verdict": certificate.verdict,
    }
    write_json_atomic(report_path, report)
    step = first.provenance.get("step")
    _write_certificate(certificate, certificate_path, certificate_table_path, {"step": step})


def _eigenvalues_digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def create_verification_wave(
    *, eigenpairs_path: str | Path, pairs: int | None, block_size: int, store_path: str | Path
) -> None:
    """A wave whose ``V`` is the first ``pairs`` eigenvectors (all when ``None``)."""
    with open_eigenpairs(eigenpairs_path) as f:
        dim, k = f["eigenvectors"].shape
        n = k if pairs is None else min(pairs, k)
        values = f["eigenvalues"][:n]
        provenance = json.loads(f.attrs["provenance"])
        vectors = f["eigenvectors"]

        def fill(write: Any) -> None:
            for rows in row_blocks(dim, n):
                write(rows, slice(None), torch.from_numpy(vectors[rows, :n]))

        create_wave_store(
            store_path,
            WaveSpec(dim, n, block_size),
            provenance,
            fill,
            {
                "wave": "verification",
                "previous": [],
                "eigenvalues_sha256": _eigenvalues_digest(values),
            },
        )
    log.info("verification wave of %d eigenvectors (D=%d)", n, dim)


def certify_eigenpairs(
    *,
    store_path: str | Path,
    receipt_paths: list[str | Path],
    eigenpairs_path: str | Path,
    report_path: str | Path,
    tolerance: float,
    certificate_path: str | Path,
    certificate_table_path: str | Path,
) -> None:
    """Residuals and Rayleigh quotients of the one-pass eigenpairs from the verification wave."""
    store = WaveStore.open(store_path)
    digests = verify_receipts(
        store,  # type: ignore[arg-type]
        [(str(r), _load_json(r, "receipt")) for r in receipt_paths],
    )
    n = store.spec.width
    with open_eigenpairs(eigenpairs_path) as f:
        values = f["eigenvalues"][:n]
    if _eigenvalues_digest(values) != store.attrs.get("eigenvalues_sha256"):
        raise SketchStoreError(
            f"{store_path} verifies other eigenpairs than {eigenpairs_path} (eigenvalues differ): "
            "it is stale; re-create it"
        )
    eigenvalues = torch.from_numpy(values)
    stream = StreamingDigests(store, digests)
    sums = torch.zeros(3, n, dtype=torch.float64)
    for rows in row_blocks(store.spec.dim, 2 * n):
        v, hv = store.read("V", rows), store.read("HV", rows)
        if not bool(torch.isfinite(hv).all()):
            raise SketchStoreError(
                f"{store_path}: HV has non-finite values in rows [{rows.start}, {rows.stop})"
            )
        stream.update("V", v)
        stream.update("HV", hv)
        sums += torch.stack(residuals_from_images(eigenvalues, v, hv))
    stream.check()
    report = _load_json(report_path, "reduction report")
    checks = {}
    if report.get("probes"):
        checks = probe_checks(
            eigenvalues,
            report["frobenius_sq_probes"],
            report["residual_sq_estimate"],
            report["probes"],
        )
    certificate = certificate_from_sums(
        eigenvalues, sums, tolerance=tolerance, checks=checks, hvps=n
    )
    step = store.provenance.get("step")
    _write_certificate(certificate, certificate_path, certificate_table_path, {"step": step})
