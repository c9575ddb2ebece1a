"""Stage ``compute_stability``: how masks and eigenspaces move between training steps."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hessketch.metrics import magnitude_order, mask_iou
from hessketch.pipeline.common import (
    check_eigenpairs_at,
    eigenpair_dims,
    open_eigenpairs,
    write_table,
)
from hessketch.trajectory import Trajectory

__all__ = ["compute_stability", "eigenspace_overlap_streamed"]

log = logging.getLogger(__name__)


def eigenspace_overlap_streamed(
    path_a: str | Path, path_b: str | Path, k: int, rows: int = 1 << 16
) -> float:
    """``‖W_aᵀ W_b‖_F² / k`` of the top-``k`` eigenvectors of two files, read by row blocks."""
    dim = eigenpair_dims(path_a)[0]
    gram = torch.zeros(k, k, dtype=torch.float64)
    with open_eigenpairs(path_a) as fa, open_eigenpairs(path_b) as fb:
        for start in range(0, dim, rows):
            a = torch.from_numpy(fa["eigenvectors"][start : start + rows, :k].astype(np.float64))
            b = torch.from_numpy(fb["eigenvectors"][start : start + rows, :k].astype(np.float64))
            gram += a.T @ b
    return float(gram.square().sum() / k)


def compute_stability(
    *,
    eigenpairs: Mapping[int, str | Path],
    trajectory_path: str | Path,
    k: int,
    table_path: str | Path,
) -> None:
    """Mask IoU and eigenspace overlap between training steps.

    For consecutive Hessian steps and from each step to the last: IoU of the top-``k``
    magnitude masks and overlap of the top-``k`` eigenspaces, with the chance level ``k/D``.
    """
    traj = Trajectory.open(trajectory_path)
    steps = sorted(eigenpairs)
    for t in steps:
        check_eigenpairs_at(eigenpairs[t], traj.params(t), f"step {t} of {trajectory_path}")
    masks = {t: magnitude_order(traj.params(t))[:k] for t in steps}
    dim = eigenpair_dims(eigenpairs[steps[0]])[0]
    pairs = sorted(
        {(a, b) for a, b in itertools.pairwise(steps)} | {(t, steps[-1]) for t in steps[:-1]}
    )
    rows = []
    for a, b in pairs:
        rows.append(
            {
                "step_a": a,
                "step_b": b,
                "k": k,
                "mask_iou": mask_iou(masks[a], masks[b]),
                "eigenspace_overlap": eigenspace_overlap_streamed(eigenpairs[a], eigenpairs[b], k),
                "chance": k / dim,
            }
        )
        log.info("%s", rows[-1])
    if not rows:
        log.info("one Hessian step: no pairs of steps to compare")
    columns = ["step_a", "step_b", "k", "mask_iou", "eigenspace_overlap", "chance"]
    write_table(table_path, rows, columns)
