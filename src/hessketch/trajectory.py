"""Parameter trajectories: flattened parameters at recorded training steps, in one HDF5 file.

Layout: dataset ``params (n, D)`` float32, dataset ``steps (n,)`` int64, dataset
``param_hashes (n,)`` (SHA-256 of each row's float32 bytes), and JSON attributes ``model``
(the model spec), ``data`` and ``training``. The file is written under a temporary name and
renamed, so a crashed training leaves no trajectory behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from hessketch.errors import TrajectoryError

__all__ = ["Trajectory", "param_hash", "write_trajectory"]


def param_hash(flat: torch.Tensor) -> str:
    """SHA-256 of a parameter vector's float32 bytes: the provenance key of every Hessian."""
    return hashlib.sha256(flat.detach().cpu().to(torch.float32).numpy().tobytes()).hexdigest()


def write_trajectory(
    path: str | Path,
    steps: list[int],
    params: list[torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Write recorded parameters and their description (``meta``: model, data, training)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    matrix = torch.stack([p.detach().cpu().to(torch.float32) for p in params]).numpy()
    with h5py.File(tmp, "w") as f:
        f.create_dataset("params", data=matrix, chunks=(1, matrix.shape[1]))
        f.create_dataset("steps", data=np.asarray(steps, dtype=np.int64))
        f.create_dataset("param_hashes", data=[param_hash(torch.from_numpy(r)) for r in matrix])
        for key, value in meta.items():
            f.attrs[key] = json.dumps(value, sort_keys=True)
    os.replace(tmp, path)


@dataclass
class Trajectory:
    """A read-only view of a trajectory file."""

    path: Path
    steps: list[int]
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Trajectory:
        """Read the index of ``path``; :class:`TrajectoryError` if it is missing or corrupt."""
        path = Path(path)
        if not path.is_file():
            raise TrajectoryError(f"trajectory {path} does not exist")
        try:
            with h5py.File(path, "r") as f:
                steps = [int(s) for s in f["steps"][:]]
                meta = {key: json.loads(value) for key, value in f.attrs.items()}
                if f["params"].shape[0] != len(steps):
                    raise ValueError(
                        f"{f['params'].shape[0]} parameter rows for {len(steps)} steps"
                    )
        except (OSError, KeyError, ValueError) as err:
            raise TrajectoryError(f"trajectory {path} is corrupt or incomplete: {err}") from err
        return cls(path, steps, meta)

    def params(self, step: int) -> torch.Tensor:
        """The flat float32 parameters recorded at ``step``, checked against their stored hash."""
        if step not in self.steps:
            raise TrajectoryError(
                f"trajectory {self.path} has no step {step}; recorded steps: {self.steps}"
            )
        row = self.steps.index(step)
        try:
            with h5py.File(self.path, "r") as f:
                flat = torch.from_numpy(np.asarray(f["params"][row], dtype=np.float32))
                stored = f["param_hashes"][row].decode()
        except (OSError, KeyError) as err:
            raise TrajectoryError(
                f"trajectory {self.path}: cannot read step {step}: {err}"
            ) from err
        if param_hash(flat) != stored:
            raise TrajectoryError(
                f"trajectory {self.path}: parameters of step {step} fail their checksum"
            )
        return flat
