"""Waves of products on disk: a block of vectors ``V`` and its images ``HV``, in one Zarr store.

A *wave* is the unit of a further pass of Hessian-vector products: a Krylov block
(:mod:`hessketch.krylov`) or the verification wave that certifies a one-pass sketch
(:mod:`hessketch.certificate`). Its store ``<name>.zarr`` holds ``V (D×b)``, written once by the
job that creates the wave, and ``HV (D×b)``, written by measurement shards. Both are chunked by
columns in blocks of ``block_size`` (the unit of sharding, as for the sketch), so shards write
whole chunks without locks and the result does not depend on the shard count.

Attributes: the wave's spec, provenance (the parameter hash), a fresh ``store_id`` and the
SHA-256 of every column block of ``V``, so that shards and the reduction detect a damaged ``V``.
Receipts are those of :mod:`hessketch.store` (:func:`~hessketch.store.verify_receipts`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from hessketch.errors import SketchStoreError
from hessketch.provenance import check_identity, hessian_facts
from hessketch.sketch import Block
from hessketch.store import TALL_ROW_CHUNK, built_in_place, column_digest

__all__ = ["WaveSpec", "WaveStore", "ZarrBasis", "create_wave_store"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class WaveSpec:
    """Size and blocking of a wave: ``width`` vectors of length ``dim``."""

    dim: int
    width: int
    block_size: int = 64

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (inverse of ``WaveSpec(**d)``)."""
        return asdict(self)

    def blocks(self) -> list[Block]:
        """The measurement blocks: ranges of ``block_size`` columns."""
        bs = self.block_size
        return [Block("wave", a, min(a + bs, self.width)) for a in range(0, self.width, bs)]


def create_wave_store(
    path: str | Path,
    spec: WaveSpec,
    provenance: dict[str, Any],
    fill: Callable[[Callable[[slice, slice, torch.Tensor], None]], None],
    attrs: dict[str, Any] | None = None,
) -> None:
    """Create the wave store at ``path`` with ``V`` written by ``fill``, atomically.

    Args:
        path: the store.
        spec: its size.
        provenance: what the products are of (at least ``param_hash``).
        fill: called once with a writer ``write(rows, columns, values)`` that stores a block
            of ``V``; together the blocks must cover ``V``.
        attrs: further attributes (e.g. the wave index).

    Raises:
        SketchStoreError: if ``fill`` wrote non-finite values or left entries unwritten.
    """
    path = Path(path)
    with built_in_place(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name in ("V", "HV"):
            group.create_array(
                name,
                shape=(spec.dim, spec.width),
                chunks=(min(spec.dim, TALL_ROW_CHUNK), spec.block_size),
                dtype="float32",
                fill_value=float("nan"),
                compressors=None,
            )

        def write(rows: slice, columns: slice, values: torch.Tensor) -> None:
            group["V"][rows, columns] = values.detach().cpu().numpy().astype(np.float32)

        fill(write)
        # Digests from what is on disk, streamed over row chunks (a column block's digest is
        # that of its rows in order): this also proves every entry was written.
        hashers = {block.start: hashlib.sha256() for block in spec.blocks()}
        for start in range(0, spec.dim, TALL_ROW_CHUNK):
            rows = slice(start, min(start + TALL_ROW_CHUNK, spec.dim))
            for block in spec.blocks():  # one chunk at a time
                part = np.ascontiguousarray(group["V"][rows, block.start : block.stop], np.float32)
                if not np.isfinite(part).all():
                    raise SketchStoreError(
                        f"{path}: V has unwritten or non-finite entries in rows "
                        f"[{rows.start}, {rows.stop}), columns [{block.start}, {block.stop})"
                    )
                hashers[block.start].update(part)
        digests = {f"V:{a}": hasher.hexdigest() for a, hasher in hashers.items()}
        group.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "kind": "wave",
                "spec": spec.to_dict(),
                "provenance": provenance,
                "store_id": uuid.uuid4().hex,
                "v_digests": digests,
                **(attrs or {}),
            }
        )


@dataclass
class WaveStore:
    """An opened wave store (see the module docstring)."""

    path: Path
    spec: WaveSpec
    provenance: dict[str, Any]
    store_id: str
    attrs: dict[str, Any]
    # "HV:<first column>" → the receipt of the shard that wrote those columns (verify_receipts)
    owners: dict[str, str] = field(default_factory=dict, repr=False)
    _group: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> WaveStore:
        """Open the store; :class:`SketchStoreError` if it is missing or malformed."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise SketchStoreError(f"no wave store at {path} (zarr.json missing)")
        try:
            group = zarr.open_group(str(path), mode=mode)
            attrs = dict(group.attrs)
            spec = WaveSpec(**attrs["spec"])
            shapes = {name: tuple(group[name].shape) for name in ("V", "HV")}
        except (KeyError, TypeError, ValueError) as err:
            raise SketchStoreError(f"wave store {path} is malformed: {err}", damaged=path) from err
        if attrs.get("format_version") != FORMAT_VERSION or attrs.get("kind") != "wave":
            raise SketchStoreError(
                f"{path}: expected a wave store of format {FORMAT_VERSION}, found "
                f"kind {attrs.get('kind')!r} format {attrs.get('format_version')!r}",
                damaged=path,
            )
        for name, shape in shapes.items():
            if shape != (spec.dim, spec.width):
                raise SketchStoreError(
                    f"{path}: array {name} has shape {shape}, expected {(spec.dim, spec.width)}",
                    damaged=path,
                )
        check_identity(path, hessian_facts(attrs["provenance"]), "wave store")
        return cls(path, spec, attrs["provenance"], attrs["store_id"], attrs, _group=group)

    def read_columns(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Columns ``[start, stop)`` of ``name`` (all rows), float32."""
        return torch.from_numpy(np.asarray(self._group[name][:, start:stop], dtype=np.float32))

    def read_block_of_v(self, block: Block) -> torch.Tensor:
        """``V``'s columns of ``block``, checked against the digest recorded at creation."""
        values = self.read_columns("V", block.start, block.stop)
        expected = self.attrs["v_digests"].get(f"V:{block.start}")
        if column_digest(values.numpy()) != expected:
            raise SketchStoreError(
                f"{self.path}: V, columns [{block.start}, {block.stop}) do not match the digest "
                "recorded when the wave was created (corrupt or overwritten); re-create the wave"
            )
        return values

    def write(self, name: str, start: int, values: torch.Tensor) -> str:
        """Write ``values`` as columns ``start…`` of ``name``; returns their digest."""
        data = values.detach().cpu().numpy().astype(np.float32, copy=False)
        self._group[name][:, start : start + data.shape[1]] = data
        return column_digest(data)

    def read(self, name: str, rows: slice) -> torch.Tensor:
        """Rows of ``name`` as float64."""
        return torch.from_numpy(np.asarray(self._group[name][rows], dtype=np.float64))

    def block_columns(self, block: Block) -> dict[str, tuple[int, int]]:
        """Columns ``[a, b)`` of each array that a shard measuring ``block`` writes."""
        return {"HV": (block.start, block.stop)}


class StreamingDigests:
    """Hashes of the column blocks of tall arrays, fed row block by row block."""

    def __init__(self, store: WaveStore, expected: dict[str, str]) -> None:
        self.store = store
        self.expected = {**expected, **store.attrs["v_digests"]}
        self.hashers: dict[str, Any] = {}

    def update(self, name: str, values: torch.Tensor) -> None:
        """Feed rows of array ``name`` (all columns)."""
        data = values.numpy().astype(np.float32)
        for block in self.store.spec.blocks():
            key = f"{name}:{block.start}"
            self.hashers.setdefault(key, hashlib.sha256()).update(
                np.ascontiguousarray(data[:, block.start : block.stop])
            )

    def check(self) -> None:
        """Compare every hash with the receipts and creation digests; name what differs."""
        for key, hasher in self.hashers.items():
            if hasher.hexdigest() != self.expected.get(key):
                name, start = key.split(":")
                stop = min(int(start) + self.store.spec.block_size, self.store.spec.width)
                owner = self.store.owners.get(key)
                raise SketchStoreError(
                    f"{self.store.path}: array {name}, columns [{start}, {stop}) do not match "
                    "the digest recorded when they were written (corrupt or overwritten)",
                    damaged=self.store.path if name == "V" or owner is None else owner,
                    fix="re-create the wave"
                    if name == "V"
                    else "rerun the shard that wrote them: snakemake --forcerun "
                    + (owner or "<its receipt>"),
                )


class ZarrBasis:
    """The waves of a Krylov basis on disk, a :class:`hessketch.krylov.Basis`.

    Reads are checked: every row is hashed as it is read, and :meth:`check` (after a full
    pass) compares the hashes with the receipts' and the creation digests.
    """

    def __init__(self, stores: list[WaveStore], digests: list[dict[str, str]]) -> None:
        if not stores:
            raise ValueError("a basis needs at least one wave")
        self.stores = stores
        self.dim = stores[0].spec.dim
        self._digests = digests
        self._streams: list[StreamingDigests] | None = None

    def widths(self) -> list[int]:
        """See :class:`hessketch.krylov.Basis`."""
        return [s.spec.width for s in self.stores]

    def start_check(self) -> None:
        """Hash everything read from now on (one full pass of ``V`` and ``HV``)."""
        self._streams = [
            StreamingDigests(s, d) for s, d in zip(self.stores, self._digests, strict=True)
        ]

    def check(self) -> None:
        """Compare the hashes of the pass since :meth:`start_check`; stop hashing."""
        streams, self._streams = self._streams, None
        for stream in streams or []:
            stream.check()

    def columns(self, name: str, rows: slice) -> torch.Tensor:
        """See :class:`hessketch.krylov.Basis` (float64)."""
        return torch.cat([self.read(j, name, rows) for j in range(len(self.stores))], dim=1)

    def wave_columns(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """See :class:`hessketch.krylov.Basis` (float64, as :meth:`read`)."""
        return self.read(wave, name, rows)

    def read(self, wave: int, name: str, rows: slice) -> torch.Tensor:
        """See :class:`hessketch.krylov.Basis`; non-finite values are an error."""
        values = self.stores[wave].read(name, rows)
        if not bool(torch.isfinite(values).all()):
            raise SketchStoreError(
                f"{self.stores[wave].path}: {name} has non-finite values in rows "
                f"[{rows.start}, {rows.stop}) (unwritten or corrupt)"
            )
        if self._streams is not None:
            self._streams[wave].update(name, values)
        return values
