"""The Hessian operator at one recorded step of a trajectory, over a configured Hessian set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hessketch.hessian import HessianOperator
from hessketch.models import build_model
from hessketch.pipeline.common import DataSpec, load_hessian_set
from hessketch.trajectory import Trajectory, param_hash

__all__ = ["HessianSpec", "hessian_at_step"]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class HessianSpec:
    """Which Hessian: the set of points (per split) and how products are computed."""

    counts: dict[str, int]
    batch_size: int = 1000
    dtype: str = "float32"
    method: str = "forward-over-reverse"


def hessian_at_step(
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    *,
    device: torch.device,
    dtype: str | None = None,
) -> tuple[HessianOperator, dict[str, Any]]:
    """The operator and its provenance (parameter hash, Hessian set) at ``step``.

    The operator is checked for determinism at construction.
    """
    traj = Trajectory.open(trajectory_path)
    flat = traj.params(step)
    data = DataSpec(**traj.meta["data"])
    x, y, set_description = load_hessian_set(data, hessian.counts)
    model = build_model(traj.meta["model"])
    op = HessianOperator(
        model,
        flat,
        x,
        y,
        batch_size=hessian.batch_size,
        dtype=DTYPES[dtype or hessian.dtype],
        device=device,
        method=hessian.method,  # type: ignore[arg-type]
    )
    provenance = {
        "param_hash": param_hash(flat),
        "step": step,
        "hessian_set": set_description,
        "model": traj.meta["model"],
        "loss": op.loss(),
    }
    log.info(
        "Hessian at step %d: D=%d, %d points, loss %.5f, device %s, %s",
        step,
        op.dim,
        op.num_points,
        provenance["loss"],
        device,
        op.dtype,
    )
    return op, provenance
