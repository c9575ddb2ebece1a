"""Stage ``train_model``: SGD training that records the parameter trajectory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hessketch.errors import NumericalError
from hessketch.models import build_model, num_params
from hessketch.pipeline.common import DataSpec, pick_device, write_table
from hessketch.training import SGDConfig, learning_problem, train_sgd
from hessketch.trajectory import flatten_buffers, write_trajectory

__all__ = ["train_model"]

log = logging.getLogger(__name__)


def train_model(
    *,
    data: DataSpec,
    model_spec: dict[str, Any],
    sgd: SGDConfig,
    trajectory_path: str | Path,
    metrics_path: str | Path,
    device: str = "auto",
) -> None:
    """Train ``model_spec`` on ``data`` with ``sgd``; write the trajectory and a metrics table.

    The trajectory holds the parameters and every buffer (BatchNorm running statistics) at
    each recorded step. The metrics table's "test" columns are of the data set's evaluation
    split (ImageNet: val).
    """
    dev = pick_device(device)
    train = data.load_for_training("train")
    test = data.load_for_training(data.reader.eval_split)
    torch.manual_seed(sgd.seed)  # the initialization is part of the run's seed
    model = build_model(model_spec)
    log.info(
        "model %s: %d parameters; %d train / %d test points; device %s",
        model_spec,
        num_params(model),
        len(train[0]),
        len(test[0]),
        dev,
    )
    recorded: dict[int, torch.Tensor] = {}
    buffers: dict[int, torch.Tensor] = {}

    def on_record(step: int, flat: torch.Tensor) -> None:
        recorded[step] = flat
        buffers[step] = flatten_buffers(model)  # train_sgd trains this very module

    rows = train_sgd(model, train, test, sgd, device=dev, on_record=on_record)
    problem = learning_problem(rows, data.num_classes(), sgd.max_loss_factor, len(train[1]))
    if problem and sgd.stop_if_not_learning:
        raise NumericalError(
            f"training did not learn: {problem}; lr {sgd.lr:g}. Lower training.lr (or train "
            "longer); to keep such a run for a study of divergence, set "
            "training.stop_if_not_learning: false"
        )
    if problem:
        log.warning(
            "training did not learn (kept: training.stop_if_not_learning is false): %s", problem
        )
    steps = sorted(recorded)
    meta = {
        "model": model_spec,
        "data": data.to_dict(),
        "training": {**sgd.__dict__, "record_steps": list(sgd.record_steps), "device": str(dev)},
        "learned": problem is None,
        "not_learning": problem,
    }
    write_trajectory(
        trajectory_path, steps, [recorded[s] for s in steps], meta, [buffers[s] for s in steps]
    )
    write_table(metrics_path, rows)
    log.info("wrote %d recorded steps to %s", len(steps), trajectory_path)
