"""Parameter trajectories: flattened parameters at recorded training steps, in one HDF5 file.

Layout: dataset ``params (n, D)`` float32, dataset ``steps (n,)`` int64, dataset
``param_hashes (n,)`` (SHA-256 of each row's float32 bytes), and JSON attributes ``model``
(the model spec), ``data`` and ``training``. A model with buffers (BatchNorm running means and
variances, batch counters) also gets ``buffers (n, B)`` float64 (every buffer, in
``model.buffers()`` order; float32 statistics and integer counters are exact in float64) and
``buffer_hashes (n,)``: a Hessian taken in eval mode depends on them as much as on the
parameters. The file is written under a temporary name and renamed, so a crashed training leaves
no trajectory behind.
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
from torch import nn

from hessketch.errors import TrajectoryError
from hessketch.models import build_model, load_flat_params

__all__ = [
    "Trajectory",
    "buffer_hash",
    "flatten_buffers",
    "load_flat_buffers",
    "param_hash",
    "write_trajectory",
]


def param_hash(flat: torch.Tensor) -> str:
    """SHA-256 of a parameter vector's float32 bytes: the provenance key of every Hessian."""
    return hashlib.sha256(flat.detach().cpu().to(torch.float32).numpy().tobytes()).hexdigest()


def buffer_hash(flat: torch.Tensor) -> str:
    """SHA-256 of a buffer vector's float64 bytes (BatchNorm statistics of a recorded step)."""
    return hashlib.sha256(flat.detach().cpu().to(torch.float64).numpy().tobytes()).hexdigest()


def flatten_buffers(model: nn.Module) -> torch.Tensor:
    """Every buffer of ``model`` (running statistics, counters) as one float64 vector."""
    buffers = [b.detach().reshape(-1).cpu().to(torch.float64) for b in model.buffers()]
    return torch.cat(buffers) if buffers else torch.zeros(0, dtype=torch.float64)


def load_flat_buffers(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy ``flat`` (from :func:`flatten_buffers`) into ``model``'s buffers, each in its dtype.

    Raises:
        ValueError: if ``flat`` does not hold exactly as many values as the model's buffers.
    """
    buffers = list(model.buffers())
    total = sum(b.numel() for b in buffers)
    if flat.ndim != 1 or flat.numel() != total:
        raise ValueError(
            f"expected a flat vector of {total} buffer values, got shape {tuple(flat.shape)}"
        )
    offset = 0
    with torch.no_grad():
        for b in buffers:
            b.copy_(flat[offset : offset + b.numel()].view(b.shape).to(b.dtype))
            offset += b.numel()


def write_trajectory(
    path: str | Path,
    steps: list[int],
    params: list[torch.Tensor],
    meta: dict[str, Any],
    buffers: list[torch.Tensor] | None = None,
) -> None:
    """Write recorded parameters and their description (``meta``: model, data, training).

    ``buffers`` (one :func:`flatten_buffers` vector per step) are stored when they are not
    empty: a model without buffers gets a file without them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    matrix = torch.stack([p.detach().cpu().to(torch.float32) for p in params]).numpy()
    if buffers is not None and len(buffers) != len(steps):
        raise ValueError(f"{len(buffers)} buffer vectors for {len(steps)} steps")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("params", data=matrix, chunks=(1, matrix.shape[1]))
        f.create_dataset("steps", data=np.asarray(steps, dtype=np.int64))
        f.create_dataset("param_hashes", data=[param_hash(torch.from_numpy(r)) for r in matrix])
        if buffers and buffers[0].numel():
            stats = torch.stack([b.detach().cpu().to(torch.float64) for b in buffers]).numpy()
            f.create_dataset("buffers", data=stats, chunks=(1, stats.shape[1]))
            f.create_dataset(
                "buffer_hashes", data=[buffer_hash(torch.from_numpy(r)) for r in stats]
            )
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
        row = self._row(step)
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

    def buffers(self, step: int) -> torch.Tensor:
        """The float64 buffers (BatchNorm statistics) recorded at ``step``, hash-checked.

        An empty vector for a model without buffers.
        """
        row = self._row(step)
        try:
            with h5py.File(self.path, "r") as f:
                if "buffers" not in f:
                    return torch.zeros(0, dtype=torch.float64)
                flat = torch.from_numpy(np.asarray(f["buffers"][row], dtype=np.float64))
                stored = f["buffer_hashes"][row].decode()
        except (OSError, KeyError) as err:
            raise TrajectoryError(
                f"trajectory {self.path}: cannot read the buffers of step {step}: {err}"
            ) from err
        if buffer_hash(flat) != stored:
            raise TrajectoryError(
                f"trajectory {self.path}: buffers (BatchNorm statistics) of step {step} fail "
                "their checksum"
            )
        return flat

    def buffers_hash(self, step: int) -> str | None:
        """The hash of the buffers of ``step`` (None for a model without buffers)."""
        flat = self.buffers(step)
        return buffer_hash(flat) if flat.numel() else None

    def model(self, step: int) -> tuple[nn.Module, torch.Tensor]:
        """The recorded network at ``step`` (in eval mode) and its flat parameter vector.

        Built from the stored spec, with the step's parameters and buffers loaded.

        Raises:
            TrajectoryError: if the model spec does not fit the recorded parameters or buffers.
        """
        flat = self.params(step)
        model = build_model(self.meta["model"])
        try:
            load_flat_params(model, flat)
            load_flat_buffers(model, self.buffers(step))
        except ValueError as err:
            raise TrajectoryError(
                f"trajectory {self.path}: step {step} does not fit its model "
                f"{self.meta['model']}: {err}"
            ) from err
        return model.eval(), flat

    def _row(self, step: int) -> int:
        if step not in self.steps:
            raise TrajectoryError(
                f"trajectory {self.path} has no step {step}; recorded steps: {self.steps}"
            )
        return self.steps.index(step)
