"""The Hessian operator at one recorded step of a trajectory, over an extracted Hessian set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hessketch.curvature import CurvatureOperator, make_curvature
from hessketch.errors import IntegrityError, SketchStoreError
from hessketch.pipeline.hessian_set import (
    check_set_against_data,
    hessian_set_description,
    read_hessian_set,
)
from hessketch.trajectory import Trajectory, param_hash

__all__ = [
    "HessianSpec",
    "check_same_hessian",
    "check_store_is_current",
    "hessian_at_step",
    "hessian_provenance",
]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class HessianSpec:
    """Which Hessian: its points (a file of ``extract_hessian_set``), how products are taken.

    ``batch_size`` (points per mini-batch of a product) trades memory for speed only: it is not
    part of :meth:`definition`, and a result does not depend on it beyond float rounding.
    """

    points: str
    batch_size: int = 1000
    dtype: str = "float32"
    method: str = "forward-over-reverse"
    curvature: str = "hessian"

    def definition(self) -> dict[str, Any]:
        """Which curvature, how its products are taken (the points: the set's checksum)."""
        return {"curvature": self.curvature, "dtype": self.dtype, "method": self.method}


def hessian_provenance(
    trajectory_path: str | Path, step: int, hessian: HessianSpec, *, check_data: bool = True
) -> dict:
    """What the Hessian at ``step`` is of, without building its operator.

    The parameter hash, the hash of the buffers (BatchNorm statistics; None without), the step
    and the Hessian set's description (with the checksum of its points): what
    :func:`check_same_hessian` compares. With ``check_data``, the set's points are first
    re-checked against the data files they were drawn from (:func:`check_set_against_data`).
    """
    traj = Trajectory.open(trajectory_path)
    if check_data:
        check_set_against_data(hessian.points)
    set_description = hessian_set_description(hessian.points)
    _check_same_data(traj, set_description, hessian.points)
    return {
        "param_hash": param_hash(traj.params(step)),
        "buffers_hash": traj.buffers_hash(step),
        "step": step,
        "hessian_set": set_description,
    }


def _check_same_data(traj: Trajectory, set_description: dict, points: str | Path) -> None:
    if set_description.get("data") != traj.meta["data"]:
        raise IntegrityError(
            f"Hessian set {points} was extracted from the data {set_description.get('data')}, "
            f"but the network in {traj.path} was trained on {traj.meta['data']}",
            damaged=points,
            fix=f"regenerate it: snakemake --forcerun {points}",
        )


def check_same_hessian(recorded: dict, current: dict, where: str, now: str) -> None:
    """Raise if ``recorded`` (the provenance in ``where``) is of another Hessian than ``current``.

    Compares the parameter hash, the curvature and how its products are taken (where
    ``current`` has them) and the checksum of the Hessian set's points; ``now`` says where
    ``current`` comes from (e.g. "step 100 of results/x/train/trajectory.h5").

    Raises:
        SketchStoreError: naming ``where``, the field that differs and both values.
    """
    if recorded.get("param_hash") != current["param_hash"]:
        raise SketchStoreError(
            f"{where} was made for parameters {recorded.get('param_hash')}, but {now} has "
            f"{current['param_hash']}: it is stale",
            damaged=where,
            fix=f"re-create it: snakemake --forcerun {where}",
        )
    if recorded.get("buffers_hash") != current.get("buffers_hash"):
        raise SketchStoreError(
            f"{where} was made for buffers (BatchNorm statistics) {recorded.get('buffers_hash')}"
            f", but {now} has {current.get('buffers_hash')}: it is stale",
            damaged=where,
            fix=f"re-create it: snakemake --forcerun {where}",
        )
    made_for = {"curvature": "hessian", **recorded.get("hessian", {})}
    if "hessian" in current and made_for != current["hessian"]:
        raise SketchStoreError(
            f"{where} was made for the products {made_for}, but they are now taken as "
            f"{current['hessian']} (hessian.curvature, hessian.dtype, hessian.method): mixing "
            "the two would give a sketch of no matrix",
            damaged=where,
            fix=f"re-create it: snakemake --forcerun {where}",
        )
    old = recorded.get("hessian_set", {}).get("points_sha256")
    new = current["hessian_set"]["points_sha256"]
    if old != new:
        raise SketchStoreError(
            f"{where} was made for a Hessian set with points_sha256 {old}, but the Hessian set "
            f"now has {new}: the set was extracted again from changed data files. Mixing the "
            "two would give a sketch of no Hessian",
            damaged=where,
            fix=f"re-create it: snakemake --forcerun {where}",
        )


def check_store_is_current(
    provenance: dict,
    store_path: str | Path,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
) -> None:
    """Raise unless a store (its ``provenance``) is of the Hessian at ``step`` as it is now.

    What a reducer checks before it trusts a store: the parameters and buffers at ``step`` of
    the trajectory, the Hessian set's points and how the products are taken. A stale store
    copied in (with its old times) is refused naming the store, which a workflow job then
    moves aside.
    """
    current = {
        **hessian_provenance(trajectory_path, step, hessian),
        "hessian": hessian.definition(),
    }
    check_same_hessian(provenance, current, str(store_path), f"step {step} of {trajectory_path}")


def hessian_at_step(
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    *,
    device: torch.device,
    dtype: str | None = None,
) -> tuple[CurvatureOperator, dict[str, Any]]:
    """The operator and its provenance (parameter hash, Hessian set) at ``step``.

    The network is the recorded one, parameters and buffers (in eval mode: BatchNorm uses the
    step's running statistics). The operator is checked for determinism at construction.
    """
    traj = Trajectory.open(trajectory_path)
    model, flat = traj.model(step)
    x, y, set_description = read_hessian_set(hessian.points)
    _check_same_data(traj, set_description, hessian.points)
    op = make_curvature(
        hessian.curvature,
        model,
        flat,
        x,
        y,
        batch_size=hessian.batch_size,
        dtype=DTYPES[dtype or hessian.dtype],
        device=device,
        method=hessian.method,
    )
    provenance = {
        "param_hash": param_hash(flat),
        "buffers_hash": traj.buffers_hash(step),
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
