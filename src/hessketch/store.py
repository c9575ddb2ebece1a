"""The on-disk sketch: a Zarr store written by independent measurement shards, and receipts.

Layout of ``<store>.zarr``: arrays ``Y (D×k)``, ``Z (s×s)``, ``PhiY (s×k)``, ``HOmega (D×q)``,
each chunked by columns in units of ``spec.block_size``, so a shard that owns a block writes
whole chunks and concurrent shards need no locks. Unwritten entries are NaN. Attributes
hold the :class:`~hessketch.sketch.SketchSpec`, the provenance (a hash of the parameter
vector, the Hessian set) and a fresh ``store_id``.

A shard writes its blocks, then a *receipt* (JSON, written atomically): the blocks, the
``store_id``, the parameter hash, and a SHA-256 of every column block it wrote. A crashed
shard leaves no receipt. :func:`verify_receipts` checks that the receipts cover every block
exactly once and belong to this store; the reduction re-hashes the data while it reads it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from hessketch.errors import IntegrityError, SketchStoreError
from hessketch.provenance import check_identity, hessian_facts
from hessketch.sketch import Block, SketchSpec

__all__ = [
    "ZarrSketch",
    "built_in_place",
    "column_digest",
    "create_store",
    "fresh_temporary",
    "read_json",
    "reduction_row_block",
    "verify_receipts",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAYS = ("Y", "Z", "PhiY", "HOmega")
# Rows per chunk of the tall arrays: about 16 MiB per float32 chunk at 64 columns.
TALL_ROW_CHUNK = 1 << 16
# The reduction reads row blocks of Y and HOmega (k + probes columns) and holds a few float64
# copies of one: rows per block are the largest power of two (so a divisor of the chunk) whose
# float64 block fits this budget, at least 4,096.
REDUCTION_BLOCK_BYTES = 256 * 2**20


def reduction_row_block(columns: int) -> int:
    """Rows per block read by the reduction of a sketch with ``columns`` = k + probes."""
    rows = TALL_ROW_CHUNK
    while rows > 4096 and 8 * rows * max(columns, 1) > REDUCTION_BLOCK_BYTES:
        rows //= 2
    return rows


def _shapes(spec: SketchSpec) -> dict[str, tuple[int, int]]:
    return {
        "Y": (spec.dim, spec.k),
        "Z": (spec.s, spec.s),
        "PhiY": (spec.s, spec.k),
        "HOmega": (spec.dim, spec.probes),
    }


def column_digest(values: np.ndarray) -> str:
    """SHA-256 of a column block's float32 values in row-major order.

    Hashing row blocks one after another gives the same digest, so a reader that streams
    over rows can verify without a second pass.
    """
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32)).hexdigest()


CHECKSUM_FIELD = "sha256"


def _json_digest(body: dict[str, Any]) -> str:
    # of the JSON round trip: int keys become strings, tuples lists, as a reader sees them
    canonical = json.dumps(json.loads(json.dumps(body)), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON so that readers see either nothing or the whole file.

    The file carries the SHA-256 of its content in the field ``sha256``, which
    :func:`read_json` checks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {key: value for key, value in payload.items() if key != CHECKSUM_FIELD}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(
        json.dumps({**body, CHECKSUM_FIELD: _json_digest(body)}, indent=1, sort_keys=True)
    )
    os.replace(tmp, path)


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file written by :func:`write_json_atomic`, its checksum verified.

    Args:
        path: the file.
        what: what it is, for the error message (``"receipt"``, ``"overlap summary"``).

    Returns:
        The content without the checksum field.

    Raises:
        IntegrityError: if the file is missing, unreadable, carries no checksum or does not
            match it; the message names the file and the command that regenerates it.
    """
    fix = f"regenerate it: snakemake --forcerun {path}"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(
            f"{what} {path} is missing or unreadable: {err}", damaged=path, fix=fix
        ) from err
    if not isinstance(data, dict) or CHECKSUM_FIELD not in data:
        raise IntegrityError(
            f"{what} {path} carries no checksum (field {CHECKSUM_FIELD!r}): it was not written "
            "by this version of hessketch",
            damaged=path,
            fix=fix,
        )
    body = {key: value for key, value in data.items() if key != CHECKSUM_FIELD}
    if _json_digest(body) != data[CHECKSUM_FIELD]:
        raise IntegrityError(
            f"{what} {path} does not match its checksum (field {CHECKSUM_FIELD!r}): it was "
            "edited or damaged after it was written",
            damaged=path,
            fix=fix,
        )
    facts = dict(body.get("identity") or {})
    if isinstance(body.get("step"), int):
        facts.setdefault("step", body["step"])
    check_identity(path, facts, what)
    return body


def fresh_temporary(path: Path) -> Path:
    """A new temporary sibling of ``path`` (``.<name>.<uuid>.tmp``) to build it under.

    Temporaries that earlier writers of ``path`` left behind are removed first: a job killed
    by a signal cannot clean up after itself, and its partial file would otherwise fill the
    disk. Only one writer of an output runs at a time (the workflow locks its outputs).
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        log.warning("removing %s, left by an interrupted writer of %s", stale, path.name)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextlib.contextmanager
def built_in_place(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory to build ``path`` in.

    On success it replaces ``path`` in one rename; on failure it is removed, so a reader never
    sees a half-built store.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temporary(path)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def create_store(path: str | Path, spec: SketchSpec, provenance: dict[str, Any]) -> None:
    """Create an empty (all-NaN) sketch store at ``path``, replacing any previous one.

    The store is built under a temporary name and renamed into place, so a crash never
    leaves a half-initialized store at ``path``.
    """
    with built_in_place(Path(path)) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, shape in _shapes(spec).items():
            rows = min(shape[0], TALL_ROW_CHUNK) if name in ("Y", "HOmega") else shape[0]
            group.create_array(
                name,
                shape=shape,
                chunks=(max(rows, 1), spec.block_size),
                dtype="float32",
                fill_value=float("nan"),
                compressors=None,  # float noise does not compress; skip the CPU cost
            )
        group.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "spec": spec.to_dict(),
                "provenance": provenance,
                "store_id": uuid.uuid4().hex,
            }
        )


@dataclass
class ZarrSketch:
    """An opened sketch store: a :class:`~hessketch.seigh.SketchSource` that shards write to."""

    path: Path
    spec: SketchSpec
    provenance: dict[str, Any]
    store_id: str
    row_block: int = TALL_ROW_CHUNK
    # "<array>:<first column>" → the receipt of the shard that wrote those columns
    # (filled by verify_receipts), so that a damaged chunk can name its shard
    owners: dict[str, str] = field(default_factory=dict, repr=False)
    _group: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> ZarrSketch:
        """Open the store at ``path``; :class:`SketchStoreError` if it is missing or malformed."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise SketchStoreError(f"no sketch store at {path} (zarr.json missing)")
        try:
            group = zarr.open_group(str(path), mode=mode)
            attrs = dict(group.attrs)
            spec = SketchSpec(**attrs["spec"])
            missing = [n for n in ARRAYS if n not in group]
        except (KeyError, TypeError, ValueError) as err:
            raise SketchStoreError(
                f"sketch store {path} is malformed: {err}", damaged=path
            ) from err
        if attrs.get("format_version") != FORMAT_VERSION or missing:
            raise SketchStoreError(
                f"sketch store {path}: expected format {FORMAT_VERSION} with arrays {ARRAYS}, "
                f"found format {attrs.get('format_version')} missing {missing}",
                damaged=path,
            )
        for name, shape in _shapes(spec).items():
            if tuple(group[name].shape) != shape:
                raise SketchStoreError(
                    f"sketch store {path}: array {name} has shape {group[name].shape}, "
                    f"expected {shape} from its spec",
                    damaged=path,
                )
        check_identity(path, hessian_facts(attrs["provenance"]), "sketch store")
        return cls(
            path,
            spec,
            attrs["provenance"],
            attrs["store_id"],
            row_block=reduction_row_block(spec.k + spec.probes),
            _group=group,
        )

    def write(self, name: str, start: int, values: torch.Tensor) -> str:
        """Write ``values`` as columns ``start…`` of ``name``; returns their digest."""
        data = values.detach().cpu().numpy().astype(np.float32, copy=False)
        self._group[name][:, start : start + data.shape[1]] = data
        return column_digest(data)

    def read(self, name: str, rows: slice | None = None) -> torch.Tensor:
        """Array ``name`` (optionally a row range) as float64.

        Raises:
            SketchStoreError: if a chunk cannot be read (truncated, corrupt), naming the array,
                the rows, the columns and the shard that wrote them.
        """
        arr = self._group[name]
        rows = slice(0, arr.shape[0]) if rows is None else rows
        try:
            data = arr[rows]
        except Exception as err:  # zarr/codec errors have no common base class
            for a, b in self.column_ranges(name):
                try:
                    arr[rows, a:b]
                except Exception as chunk_err:
                    raise self.damaged(name, rows, (a, b), f"unreadable: {chunk_err}") from err
            raise SketchStoreError(f"{self.path}: array {name}, rows {rows}: {err}") from err
        return torch.from_numpy(np.asarray(data, dtype=np.float64))

    def column_ranges(self, name: str) -> list[tuple[int, int]]:
        """The column ranges ``[a, b)`` of ``name`` that the blocks write, one per block."""
        return [
            cols
            for block in self.spec.blocks()
            for n, cols in self.block_columns(block).items()
            if n == name
        ]

    def damaged(
        self, name: str, rows: slice, columns: tuple[int, int], what: str
    ) -> SketchStoreError:
        """The error for a damaged part of the store, naming the shard to rerun if known."""
        a, b = columns
        owner = self.owners.get(f"{name}:{a}")
        where = f"written by the shard of {owner}" if owner else "no receipt names its writer"
        return SketchStoreError(
            f"{self.path}: array {name}, rows [{rows.start}, {rows.stop}), columns [{a}, {b}) "
            f"{what} (a chunk is missing, truncated or corrupt), {where}",
            damaged=owner or self.path,
            fix=f"rerun it: snakemake --forcerun {owner}" if owner else "re-create the store",
        )

    def block_columns(self, block: Block) -> dict[str, tuple[int, int]]:
        """Columns ``[a, b)`` of each array that ``block`` writes."""
        if block.kind == "probe":
            return {"HOmega": (block.start, block.stop)}
        out = {"Z": (block.start, block.stop)}
        if block.start < self.spec.k:
            stop = min(block.stop, self.spec.k)
            out["Y"] = (block.start, stop)
            out["PhiY"] = (block.start, stop)
        return out


def verify_receipts(
    sketch: ZarrSketch, receipts: list[tuple[str, dict[str, Any]]]
) -> dict[str, str]:
    """Check that receipts belong to ``sketch`` and cover each block exactly once.

    Args:
        sketch: the opened store.
        receipts: ``(file name, parsed receipt)`` pairs.

    Returns:
        The expected digest of every written column block, keyed ``"<array>:<start>"``.

    Raises:
        SketchStoreError: naming the receipt at fault.
    """
    expected = {tuple(b.to_list()) for b in sketch.spec.blocks()}
    seen: dict[tuple[Any, ...], str] = {}
    digests: dict[str, str] = {}
    param_hash = sketch.provenance.get("param_hash")
    for name, receipt in receipts:
        if receipt.get("store_id") != sketch.store_id:
            raise SketchStoreError(
                f"receipt {name} belongs to store {receipt.get('store_id')}, not to {sketch.path} "
                f"({sketch.store_id}): the store was re-created after this shard ran, or the "
                "receipt was copied from another store",
                damaged=name,
                fix=f"rerun its shard: snakemake --forcerun {name}",
            )
        if receipt.get("param_hash") != param_hash:
            raise SketchStoreError(
                f"receipt {name} was measured at parameters {receipt.get('param_hash')}, "
                f"but the store is for {param_hash}",
                damaged=name,
                fix=f"rerun its shard: snakemake --forcerun {name}",
            )
        for key_name in receipt.get("digests", {}):
            sketch.owners[key_name] = name
        measured = sum(b[2] - b[1] for b in receipt["blocks"])
        if receipt.get("hvps") != measured:
            raise SketchStoreError(
                f"receipt {name} reports {receipt.get('hvps')} HVPs for blocks of {measured} "
                "columns: it does not describe what its shard measured",
                damaged=name,
                fix=f"rerun that shard: snakemake --forcerun {name}",
            )
        for block in receipt["blocks"]:
            key = tuple(block)
            if key not in expected:
                raise SketchStoreError(
                    f"receipt {name} names block {block}, which {sketch.path} lacks",
                    damaged=name,
                    fix=f"rerun its shard: snakemake --forcerun {name}",
                )
            if key in seen:
                raise SketchStoreError(f"block {block} is claimed by both {seen[key]} and {name}")
            seen[key] = name
        digests.update(receipt["digests"])
    missing = sorted(expected - set(seen))
    if missing:
        raise SketchStoreError(
            f"{len(missing)} blocks of {sketch.path} have no receipt (first: {list(missing[0])}); "
            "a measurement shard did not finish"
        )
    return digests


def check_digests(sketch: ZarrSketch, digests: dict[str, str], hashers: dict[str, Any]) -> None:
    """Compare streamed hashes of the tall arrays and fresh hashes of the small ones.

    Args:
        sketch: the store.
        digests: expected digests from :func:`verify_receipts`.
        hashers: running ``hashlib`` objects for the tall arrays, keyed like ``digests``.
    """
    found = {key: h.hexdigest() for key, h in hashers.items()}
    small = {name: sketch.read(name).numpy() for name in ("Z", "PhiY")}
    for block in sketch.spec.blocks():
        for name, (a, b) in sketch.block_columns(block).items():
            key = f"{name}:{a}"
            if name in ("Z", "PhiY"):
                found[key] = column_digest(small[name][:, a:b])
            if found.get(key) != digests.get(key):
                owner = sketch.owners.get(key, "the shard that wrote them")
                raise SketchStoreError(
                    f"{sketch.path}: array {name}, columns [{a}, {b}) do not match the receipt "
                    f"{owner} (overwritten or corrupt)",
                    damaged=sketch.owners.get(key),
                    fix=f"rerun that shard: snakemake --forcerun {owner}",
                )
