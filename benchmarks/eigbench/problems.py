"""The benchmark problems: network, training, Hessian set, sketch sizes and reference.

Trained parameters are cached under ``<out>/params/`` keyed by a hash of everything that
determines them (model, data, SGD settings, recorded steps); nothing else is cached here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hessketch.data import balanced_indices
from hessketch.hessian import HessianOperator
from hessketch.models import build_model, num_params
from hessketch.pipeline.common import DataSpec
from hessketch.training import SGDConfig, train_sgd

log = logging.getLogger(__name__)

DATA = DataSpec("fashion-mnist", None, 16)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: a trained network and the Hessians to decompose."""

    name: str
    model: dict[str, Any]
    dim: int
    steps: tuple[int, ...]  # Hessian steps (also the recorded training steps)
    counts: dict[str, int]  # Hessian set, points per split
    batch_size: int  # Hessian mini-batch
    k: int
    s: int
    reference: str  # method whose eigenpairs every row is scored against
    mask_ks: tuple[int, ...]  # k of the reported mask overlaps
    passes: tuple[int, ...]  # default passes of the iterative runs
    krylov_s: tuple[int, ...]  # default HVPs per pass of the iterative runs
    eigsh_interfaces: tuple[str, ...]  # default LinearOperator interfaces given to eigsh
    methods: tuple[str, ...]  # methods run by default
    krylov_widths: tuple[int, ...] = ()  # if set: HVPs per pass as decompose(width=...)
    lr: float = 0.3
    train_batch: int = 500
    seed: int = 12345
    data: DataSpec = field(default=DATA)

    def sgd(self) -> SGDConfig:
        """The SGD run whose recorded parameters this problem's Hessians are taken at."""
        last = max(self.steps)
        return SGDConfig(
            lr=self.lr,
            batch_size=self.train_batch,
            steps=last,
            seed=self.seed,
            record_steps=self.steps,
            eval_every=max(last, 1),  # evaluations do not change the trajectory
        )

    def cache_key(self) -> str:
        """Hash of everything that determines the trained parameters."""
        desc = {"model": self.model, "data": asdict(self.data), "sgd": asdict(self.sgd())}
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


ALL_METHODS = (
    "exact",
    "eigsh",
    "eigsh-curvlinops",
    "hessketch",
    "hessketch-iter",
    "skerch",
    "pyhessian",
)

PROBLEMS: dict[str, Problem] = {
    "mlp16": Problem(
        name="mlp16",
        model={"name": "mlp16"},
        dim=7_030,
        steps=(0, 100, 1000),
        counts={"train": 500, "test": 500},
        batch_size=1000,
        k=355,
        s=710,
        reference="exact",
        mask_ks=(350,),
        passes=(2, 3),
        krylov_s=(355, 710),
        eigsh_interfaces=("matvec", "matmat"),
        methods=ALL_METHODS,
    ),
    "mlp1m": Problem(
        name="mlp1m",
        model={"name": "mlp", "widths": [256, 875, 875, 10], "activation": "tanh"},
        dim=1_000_135,
        steps=(100,),
        counts={"test": 500},
        batch_size=500,
        k=100,
        s=200,
        reference="eigsh",
        mask_ks=(10, 50, 100),
        passes=(15, 20),
        krylov_s=(100,),
        krylov_widths=(20,),
        eigsh_interfaces=("matvec",),
        methods=("eigsh", "hessketch", "hessketch-iter", "skerch", "pyhessian"),
    ),
}


def params_path(out: Path, problem: Problem) -> Path:
    """Where the trained parameters of ``problem`` are cached."""
    return out / "params" / f"{problem.name}-{problem.cache_key()}.pt"


def trained_params(out: Path, problem: Problem) -> dict[int, torch.Tensor]:
    """Flat parameters at every Hessian step: from the cache, else trained now and cached."""
    path = params_path(out, problem)
    if path.is_file():
        cached = torch.load(path)
        log.info("%s: trained parameters from %s", problem.name, path)
        return {int(step): flat for step, flat in cached["params"].items()}
    train, test = problem.data.load("train"), problem.data.load("test")
    torch.manual_seed(problem.seed)  # the initialization is part of the run's seed
    model = build_model(problem.model)
    if num_params(model) != problem.dim:
        raise RuntimeError(f"{problem.name}: {num_params(model)} parameters, not {problem.dim}")
    recorded: dict[int, torch.Tensor] = {}
    start = time.perf_counter()
    train_sgd(model, train, test, problem.sgd(), on_record=recorded.__setitem__)
    log.info("%s: trained in %.1f s", problem.name, time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"params": recorded, "sgd": asdict(problem.sgd()), "model": problem.model}, tmp)
    os.replace(tmp, path)
    return recorded


def hessian_set(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of the problem's fixed, class-balanced Hessian set (the union of the
    balanced subsets of each split in ``problem.counts``, as the paper's MLP benchmark)."""
    xs, ys = [], []
    for split, n in problem.counts.items():
        labels = torch.from_numpy(problem.data.labels(split)).to(torch.int64)
        x, y = problem.data.load(split, balanced_indices(labels, n).numpy())
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def hessian_operator(
    problem: Problem, flat: torch.Tensor, dtype: torch.dtype = torch.float32
) -> HessianOperator:
    """hessketch's Hessian operator at ``flat`` (determinism-checked, product count at 0)."""
    x, y = hessian_set(problem)
    return HessianOperator(
        build_model(problem.model), flat, x, y, batch_size=problem.batch_size, dtype=dtype
    )
