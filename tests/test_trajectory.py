"""Trajectory files: round trip, missing steps, corruption, and training reproducibility."""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import pytest
import torch
from torch import nn

from hessketch.errors import NumericalError, TrajectoryError
from hessketch.hessian import HessianOperator, dense_matrix
from hessketch.models import build_model, flatten_params, load_flat_params, register_model
from hessketch.pipeline.exact import refuse_degenerate
from hessketch.training import SGDConfig, train_sgd
from hessketch.trajectory import (
    Trajectory,
    flatten_buffers,
    param_hash,
    write_trajectory,
)

MODEL = {"name": "mlp", "widths": [6, 5, 3]}


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_round_trip_and_missing_step(tmp_path: Path) -> None:
    params = [torch.randn(53), torch.randn(53)]
    write_trajectory(tmp_path / "t.h5", [0, 10], params, {"model": MODEL})
    traj = Trajectory.open(tmp_path / "t.h5")
    assert traj.steps == [0, 10] and traj.meta["model"] == MODEL
    assert torch.equal(traj.params(10), params[1])
    with pytest.raises(TrajectoryError, match=r"has no step 5; recorded steps: \[0, 10\]"):
        traj.params(5)


def test_missing_truncated_and_tampered_files(tmp_path: Path) -> None:
    with pytest.raises(TrajectoryError, match="does not exist"):
        Trajectory.open(tmp_path / "none.h5")
    path = tmp_path / "t.h5"
    write_trajectory(path, [0], [torch.randn(53)], {"model": MODEL})
    (tmp_path / "cut.h5").write_bytes(path.read_bytes()[:500])
    with pytest.raises(TrajectoryError, match=r"cut\.h5 is corrupt or incomplete"):
        Trajectory.open(tmp_path / "cut.h5")
    with h5py.File(path, "r+") as f:
        f["params"][0, 3] += 1.0
    with pytest.raises(TrajectoryError, match="parameters of step 0 fail their checksum"):
        Trajectory.open(path).params(0)


def test_training_is_reproducible_and_records_the_right_steps() -> None:
    cfg = SGDConfig(lr=0.1, batch_size=8, steps=20, seed=3, record_steps=(0, 7, 20), eval_every=10)
    runs = []
    for _ in range(2):
        torch.manual_seed(cfg.seed)
        model = build_model(MODEL)
        start = flatten_params(model)
        recorded: dict[int, torch.Tensor] = {}
        rows = train_sgd(
            model,
            toy_data(40, 0),
            toy_data(20, 1),
            cfg,
            on_record=lambda s, p, r=recorded: r.__setitem__(s, p),
        )
        runs.append((start, recorded, rows))
    (start, recorded, rows), (_, recorded2, _) = runs
    assert sorted(recorded) == [0, 7, 20]
    assert torch.equal(recorded[0], start)  # step 0 is the initialization
    assert all(param_hash(recorded[s]) == param_hash(recorded2[s]) for s in recorded)
    assert [r["step"] for r in rows] == [0, 10, 20]
    assert not torch.equal(recorded[7], recorded[20])


def test_diverged_training_fails_at_once_naming_the_step() -> None:
    """With lr 1e38 the parameters overflow within the first updates: training stops with the
    update named, and no non-finite parameters are ever recorded. (lr 1e6 saturates the
    network with finite parameters and loss; its zero Hessian is refused below.)"""
    lr = 1e38
    cfg = SGDConfig(lr=lr, batch_size=8, steps=50, seed=3, record_steps=tuple(range(51)))
    recorded: dict[int, torch.Tensor] = {}
    torch.manual_seed(cfg.seed)
    with pytest.raises(
        NumericalError,
        match=r"training diverged: the (mini-batch loss of update|parameters at step) \d+",
    ):
        train_sgd(
            build_model(MODEL),
            toy_data(40, 0),
            toy_data(20, 1),
            cfg,
            on_record=recorded.__setitem__,
        )
    assert recorded and all(bool(torch.isfinite(p).all()) for p in recorded.values())


def test_zero_hessian_is_refused() -> None:
    """A saturated network (the initial parameters ×1e6, as after a diverged run) has an
    exactly zero float64 Hessian: the exact stage's check refuses it, naming what, instead of
    decomposing it into overlaps of 0; a non-finite one is refused too."""
    torch.manual_seed(0)
    flat = flatten_params(build_model(MODEL)).double() * 1e6
    x, y = toy_data(20, 0)
    op = HessianOperator(build_model(MODEL).double(), flat, x.double(), y, dtype=torch.float64)
    matrix = dense_matrix(op)
    assert not matrix.any()
    with pytest.raises(NumericalError, match="the Hessian at step 7 is exactly zero"):
        refuse_degenerate(matrix, "the Hessian at step 7")
    matrix[3, 3] = float("nan")
    with pytest.raises(NumericalError, match="has non-finite entries"):
        refuse_degenerate(matrix, "the Hessian at step 7")


@register_model("test-bn-convnet")
def bn_convnet() -> nn.Module:
    """A small convnet with BatchNorm: its eval-mode Hessian depends on the running statistics."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def test_a_batchnorm_hessian_at_a_recorded_step_is_the_live_models(tmp_path: Path) -> None:
    """The trajectory holds every buffer; the Hessian at a recorded step (eval mode, that step's
    running statistics) equals the one of the trained model object itself."""
    spec = {"name": "test-bn-convnet"}
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 8, 8, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    cfg = SGDConfig(lr=0.05, batch_size=10, steps=15, seed=3, record_steps=(0, 15), eval_every=15)
    torch.manual_seed(cfg.seed)
    live = build_model(spec)
    params: dict[int, torch.Tensor] = {}
    buffers: dict[int, torch.Tensor] = {}

    def on_record(step: int, flat: torch.Tensor) -> None:
        params[step], buffers[step] = flat, flatten_buffers(live)

    train_sgd(live, (x, y), (x[:20], y[:20]), cfg, on_record=on_record)
    write_trajectory(
        tmp_path / "t.h5",
        [0, 15],
        [params[0], params[15]],
        {"model": spec},
        [
            buffers[0],
            buffers[15],
        ],
    )
    traj = Trajectory.open(tmp_path / "t.h5")
    assert torch.equal(traj.buffers(15), flatten_buffers(live))
    assert not torch.equal(traj.buffers(0), traj.buffers(15))  # the statistics moved
    recorded, flat = traj.model(15)
    assert not recorded.training and torch.equal(flat, flatten_params(live))
    points = (x[:30].double(), y[:30])
    v = torch.randn(flat.numel(), 5, generator=gen, dtype=torch.float64)
    ops = {
        name: HessianOperator(model, flatten_params(model), *points, dtype=torch.float64) @ v
        for name, model in (("recorded", recorded), ("live", copy.deepcopy(live)))
    }
    assert torch.equal(ops["recorded"], ops["live"])
    # with the initial statistics (what a trajectory without buffers would give) it differs
    stale = build_model(spec)
    load_flat_params(stale, flat)
    wrong = HessianOperator(stale, flat, *points, dtype=torch.float64) @ v
    assert (wrong - ops["live"]).norm() > 1e-3 * ops["live"].norm()
    # a damaged buffer row is refused
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        f["buffers"][1, 0] += 1.0
    with pytest.raises(TrajectoryError, match=r"buffers .* of step 15 fail their checksum"):
        Trajectory.open(tmp_path / "t.h5").model(15)


def test_a_model_without_buffers_writes_none(tmp_path: Path) -> None:
    model = build_model(MODEL)
    write_trajectory(
        tmp_path / "t.h5", [0], [flatten_params(model)], {"model": MODEL}, [flatten_buffers(model)]
    )
    traj = Trajectory.open(tmp_path / "t.h5")
    assert traj.buffers(0).numel() == 0 and traj.buffers_hash(0) is None
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert "buffers" not in f
