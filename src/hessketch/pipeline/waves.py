"""Stages of the verification wave, and what every wave stage shares.

- ``create_verification_wave``: ``V`` = the one-pass eigenvectors;
- ``certify_eigenpairs``: residuals, Rayleigh quotients and the bounds on every top-``j``
  space from the verification wave.

The block Krylov stages are in :mod:`hessketch.pipeline.krylov`. Waves are measured by
``measure_wave_shard`` (:mod:`hessketch.pipeline.measure`). Every stage verifies the receipts,
the chain of wave stores (each records the ids of the waves it was built from) and the
checksums of everything it reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hessketch.certificate import (
    DEFAULT_SPACE_TOLERANCE,
    Certificate,
    certificate_from_sums,
    orthonormality_defect,
    probe_checks,
    residuals_from_images,
)
from hessketch.errors import SketchStoreError
from hessketch.krylov import row_blocks
from hessketch.pipeline.common import open_eigenpairs, write_table
from hessketch.provenance import hessian_facts
from hessketch.store import read_json, verify_receipts, write_json_atomic
from hessketch.wavestore import StreamingDigests, WaveSpec, WaveStore, ZarrBasis, create_wave_store

__all__ = [
    "certify_eigenpairs",
    "create_verification_wave",
    "open_waves",
    "product_dtype",
    "write_certificate",
]

log = logging.getLogger(__name__)


def _load_json(path: str | Path, what: str) -> dict[str, Any]:
    return read_json(path, what)


def product_dtype(provenance: dict[str, Any]) -> torch.dtype:
    """The dtype of the products of a Hessian, from a store's provenance (float32 default)."""
    name = provenance.get("hessian", {}).get("dtype") or provenance.get("dtype") or "float32"
    return {"float32": torch.float32, "float64": torch.float64}[name]


def open_waves(store_paths: list[str | Path], receipt_paths: list[list[str | Path]]) -> ZarrBasis:
    """Open measured waves, verify their receipts and their chain, check every checksum."""
    stores, digests = [], []
    for i, (path, receipts) in enumerate(zip(store_paths, receipt_paths, strict=True)):
        store = WaveStore.open(path)
        expected_chain = [s.store_id for s in stores]
        if store.attrs.get("previous", []) != expected_chain:
            raise SketchStoreError(
                f"{path} (wave {i}) was built from waves {store.attrs.get('previous')}, but the "
                f"waves before it are now {expected_chain}: it is stale",
                damaged=path,
                fix=f"re-create it: snakemake --forcerun {path}",
            )
        if stores and store.provenance["param_hash"] != stores[0].provenance["param_hash"]:
            raise SketchStoreError(
                f"{path} is for other parameters than {stores[0].path}", damaged=path
            )
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


def write_certificate(
    certificate: Certificate, json_path: str | Path, table_path: str | Path, extra: dict
) -> None:
    """Write a certificate's JSON (with ``extra``) and per-pair table; log its verdict."""
    write_json_atomic(json_path, {**extra, **certificate.to_dict()})
    write_table(table_path, certificate.rows())
    n = len(certificate.eigenvalues)
    level = logging.INFO if certificate.trusted_k == n and certificate.space_k else logging.WARNING
    log.log(level, "step %s: %s", extra.get("step"), certificate.verdict)


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
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    product_error: float | None = None,
) -> None:
    """Residuals, Rayleigh quotients and space bounds of the one-pass eigenpairs.

    All from the verification wave: its ``V`` (the eigenvectors as stored) and ``HV``; the Gram
    ``VᵀV`` gives their departure from orthonormality, which the space bounds account for.
    """
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
    gram = torch.zeros(n, n, dtype=torch.float64)
    for rows in row_blocks(store.spec.dim, 2 * n):
        v, hv = store.read("V", rows), store.read("HV", rows)
        if not bool(torch.isfinite(hv).all()):
            raise SketchStoreError(
                f"{store_path}: HV has non-finite values in rows [{rows.start}, {rows.stop})"
            )
        stream.update("V", v)
        stream.update("HV", hv)
        sums += torch.stack(residuals_from_images(eigenvalues, v, hv))
        gram += v.T @ v
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
        eigenvalues,
        sums,
        tolerance=tolerance,
        space_tolerance=space_tolerance,
        checks=checks,
        hvps=n,
        orthonormality=orthonormality_defect(gram),
        product_dtype=product_dtype(store.provenance),
        product_error=product_error,
    )
    step = store.provenance.get("step")
    identity = {**hessian_facts(store.provenance), "method": "sketched"}
    write_certificate(
        certificate, certificate_path, certificate_table_path, {"step": step, "identity": identity}
    )
