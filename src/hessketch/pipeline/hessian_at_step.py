"""The Hessian operator at one recorded step of a trajectory, over a configured Hessian set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hessketch.errors import SketchStoreError
from hessketch.hessian import HessianOperator
from hessketch.models import build_model
from hessketch.pipeline.common import DataSpec, load_hessian_set
from hessketch.trajectory import Trajectory, param_hash

__all__ = ["HessianSpec", "check_same_hessian", "hessian_at_step", "hessian_provenance"]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class HessianSpec:
    """Which Hessian: the set of points (per split) and how products are computed.

    ``batch_size`` (points per mini-batch of a product) trades memory for speed only: it is not
    part of :meth:`definition`, and a result does not depend on it beyond float rounding.
    """

    counts: dict[str, int]
    batch_size: int = 1000
    dtype: str = "float32"
    method: str = "forward-over-reverse"

    def definition(self) -> dict[str, Any]:
        """What a result depends on (everything but the machine setting ``batch_size``)."""
        return {"counts": dict(self.counts), "dtype": self.dtype, "method": self.method}


def hessian_provenance(trajectory_path: str | Path, step: int, hessian: HessianSpec) -> dict:
    """What the Hessian at ``step`` is of, without building its operator.

    The parameter hash, the step and the Hessian set's description (with the checksum of its
    points as read now from the data root): what :func:`check_same_hessian` compares.
    """
    traj = Trajectory.open(trajectory_path)
    flat = traj.params(step)
    _, _, set_description = load_hessian_set(DataSpec(**traj.meta["data"]), hessian.counts)
    return {"param_hash": param_hash(flat), "step": step, "hessian_set": set_description}


def check_same_hessian(recorded: dict, current: dict, where: str, now: str) -> None:
    """Raise if ``recorded`` (the provenance in ``where``) is of another Hessian than ``current``.

    Compares the parameter hash and the checksum of the Hessian set's points; ``now`` says where
    ``current`` comes from (e.g. "step 100 of results/x/train/trajectory.h5").

    Raises:
        SketchStoreError: naming ``where``, the field that differs and both values.
    """
    if recorded.get("param_hash") != current["param_hash"]:
        raise SketchStoreError(
            f"{where} was made for parameters {recorded.get('param_hash')}, but {now} has "
            f"{current['param_hash']}: it is stale; re-create it (a plain `snakemake` does)"
        )
    old = recorded.get("hessian_set", {}).get("points_sha256")
    new = current["hessian_set"]["points_sha256"]
    if old != new:
        root = current["hessian_set"]["data"].get("root") or "the data set's default root"
        raise SketchStoreError(
            f"{where} was made for a Hessian set with points_sha256 {old}, but the data under "
            f"{root} now gives {new} for the same indices: the data files changed since. Mixing "
            "the two would give a sketch of no Hessian; rerun the study on the current data "
            "(`snakemake --forcerun train_model`)"
        )


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
        "hessian": hessian.definition(),
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
