"""Stage ``extract_hessian_set``: the fixed points of one Hessian, extracted once per study.

A Hessian set is the class-balanced subset of one split (the lowest indices of each class).
It is read from the data set once and written to a small HDF5 file, so that every measurement
and exact job reads only that file (never the whole data set), and every result can name the
exact points it is of.

Layout: datasets ``inputs (n, C, H, W)`` float32, ``labels (n,)`` int64 and ``indices (n,)``
int64 (positions in the split), all with Fletcher-32 chunk checksums; JSON attribute
``description`` (data set, split, size, classes, the SHA-256 of the indices and of the points).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from hessketch.data import balanced_indices
from hessketch.errors import IntegrityError
from hessketch.pipeline.common import DataSpec
from hessketch.provenance import check_identity
from hessketch.store import fresh_temporary

__all__ = [
    "check_set_against_data",
    "extract_hessian_set",
    "hessian_set_description",
    "points_sha256",
    "read_hessian_set",
]

log = logging.getLogger(__name__)


def points_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of a Hessian set's points: inputs as float32, then labels as int64."""
    digest = hashlib.sha256(x.to(torch.float32).contiguous().numpy().tobytes())
    digest.update(y.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _indices_sha256(indices: torch.Tensor) -> str:
    return hashlib.sha256(indices.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


def extract_hessian_set(*, data: DataSpec, split: str, n: int, path: str | Path) -> None:
    """Write the class-balanced Hessian set of ``n`` points of ``split`` to ``path``.

    Only the labels of the split and the chosen points are read (an ImageNet split is never
    loaded whole).

    Raises:
        DataError: the data are missing or malformed, or a class has too few points.
    """
    num_classes = data.num_classes()
    labels = torch.from_numpy(np.asarray(data.labels(split), dtype=np.int64))
    indices = balanced_indices(labels, n, num_classes)
    x, y = data.load(split, indices.numpy())
    description = {
        "data": data.to_dict(),
        "split": split,
        "n": n,
        "num_classes": num_classes,
        "input_shape": list(x.shape[1:]),
        "indices_sha256": _indices_sha256(indices),
        "points_sha256": points_sha256(x, y),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temporary(path)
    try:
        with h5py.File(tmp, "w") as f:
            for name, values in (("inputs", x), ("labels", y), ("indices", indices)):
                f.create_dataset(name, data=values.numpy(), fletcher32=True, chunks=True)
            f.attrs["description"] = json.dumps(description, sort_keys=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "Hessian set %s: %d points of %d classes from the %s split, inputs %s, points %s",
        path,
        n,
        num_classes,
        split,
        tuple(x.shape[1:]),
        description["points_sha256"][:12],
    )


def hessian_set_description(path: str | Path) -> dict[str, Any]:
    """The description of a Hessian set file (cheap: its points are not read or checked)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            description = json.loads(f.attrs["description"])
    except (OSError, KeyError, ValueError) as err:
        raise IntegrityError(
            f"Hessian set {path} is missing or damaged: {err}",
            damaged=path,
            fix=f"regenerate it: snakemake --forcerun {path}",
        ) from err
    check_identity(path, {"set": description.get("split")}, "Hessian set")
    return description


def read_hessian_set(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Inputs, labels and description of a Hessian set file, its checksums verified.

    Raises:
        IntegrityError: the file is missing or damaged (a chunk fails its Fletcher-32 check),
            or its points do not match the SHA-256 in its description; the message names the
            file and the command that regenerates it.
    """
    path = Path(path)
    fix = f"regenerate it: snakemake --forcerun {path}"
    description = hessian_set_description(path)
    try:
        with h5py.File(path, "r") as f:
            x = torch.from_numpy(np.asarray(f["inputs"][...], dtype=np.float32))
            y = torch.from_numpy(np.asarray(f["labels"][...], dtype=np.int64))
    except (OSError, KeyError) as err:
        raise IntegrityError(
            f"Hessian set {path} is missing or damaged: {err}", damaged=path, fix=fix
        ) from err
    if points_sha256(x, y) != description.get("points_sha256"):
        raise IntegrityError(
            f"Hessian set {path}: its points do not match the SHA-256 in its description: "
            "edited or damaged after it was written",
            damaged=path,
            fix=fix,
        )
    return x, y, description


def check_set_against_data(path: str | Path) -> None:
    """Raise unless the Hessian set at ``path`` holds the points of the data it names.

    Reloads its points (by the recorded indices) from the data set its description names and
    compares their SHA-256 with the file's: a set edited with its checksum recomputed, or
    extracted from other data files than those now in place, is refused naming the file.
    """
    path = Path(path)
    x, y, description = read_hessian_set(path)
    with h5py.File(path, "r") as f:
        indices = np.asarray(f["indices"][...], dtype=np.int64)
    data = DataSpec(**description["data"])
    fresh_x, fresh_y = data.load(description["split"], indices)
    if points_sha256(fresh_x, fresh_y) != points_sha256(x, y):
        raise IntegrityError(
            f"Hessian set {path}: its points are not the points {description['split']}"
            f"[indices] of the data in {data.resolved_root()} (edited with its checksum "
            "recomputed, or extracted from other data files than those there now)",
            damaged=path,
            fix=f"regenerate it: snakemake --forcerun {path}",
        )
