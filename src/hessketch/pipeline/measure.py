"""Stages ``create_sketch_store`` and ``measure_sketch_shard``."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hessketch.curvature import CurvatureOperator, determinism_settings, deterministic_mode
from hessketch.errors import SketchStoreError
from hessketch.pipeline.common import pick_device
from hessketch.pipeline.hessian_at_step import (
    DTYPES,
    HessianSpec,
    check_same_hessian,
    hessian_at_step,
    hessian_provenance,
)
from hessketch.provenance import hessian_facts
from hessketch.sketch import Block, SketchSpec, measure_block
from hessketch.store import ZarrSketch, create_store, write_json_atomic
from hessketch.trajectory import Trajectory
from hessketch.wavestore import WaveStore

__all__ = [
    "create_sketch_store",
    "measure_sketch_shard",
    "measure_wave_shard",
    "parse_scatter_item",
]

log = logging.getLogger(__name__)

# Where the shard ran, for the receipt: the scheduler's job (an array task: the array and the
# task too) and the GPUs it granted.
_SCHEDULER_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURMD_NODENAME",
)


def parse_scatter_item(item: str) -> tuple[int, int]:
    """``"3-of-7"`` → ``(2, 7)``: the 0-based shard index and the number of shards."""
    try:
        i, n = (int(p) for p in item.split("-of-"))
    except ValueError as err:
        raise ValueError(f"scatter item {item!r} is not of the form 'I-of-N'") from err
    if not 1 <= i <= n:
        raise ValueError(f"scatter item {item!r}: need 1 <= I <= N")
    return i - 1, n


def create_sketch_store(
    *,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    sketch: dict,
    store_path: str | Path,
) -> None:
    """Create the empty store of one Hessian's sketch, with its provenance.

    The provenance holds the parameter hash and the checksum of the Hessian set's points as
    read now: every shard compares both with what it reads (no sketch mixes two Hessians).
    """
    dim = Trajectory.open(trajectory_path).params(step).numel()
    spec = SketchSpec(dim=dim, **sketch)
    provenance = {
        **hessian_provenance(trajectory_path, step, hessian),
        "hessian": hessian.definition(),
        "trajectory": str(trajectory_path),
        "dtype": hessian.dtype,
    }
    create_store(store_path, spec, provenance)
    log.info(
        "created %s: D=%d k=%d s=%d probes=%d, %d blocks of %d",
        store_path,
        spec.dim,
        spec.k,
        spec.s,
        spec.probes,
        len(spec.blocks()),
        spec.block_size,
    )


def _operator_for(
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    store: ZarrSketch | WaveStore,
    dev: torch.device,
) -> tuple[CurvatureOperator, dict]:
    """The Hessian at ``step``, checked against the parameters and points ``store`` is for."""
    op, provenance = hessian_at_step(trajectory_path, step, hessian, device=dev)
    check_same_hessian(
        store.provenance, provenance, str(store.path), f"step {step} of {trajectory_path}"
    )
    if op.dim != store.spec.dim:
        raise SketchStoreError(f"{store.path} has D={store.spec.dim}, the model has {op.dim}")
    return op, provenance


def _run_shard(
    store: ZarrSketch | WaveStore,
    scatter_item: str,
    receipt_path: str | Path,
    op: CurvatureOperator,
    provenance: dict,
    measure: Callable[[Block], dict[str, tuple[int, torch.Tensor]]],
) -> None:
    """Measure this shard's blocks of ``store``, then write the receipt (atomically, last)."""
    shard, num_shards = parse_scatter_item(scatter_item)
    blocks = store.spec.blocks()[shard::num_shards]
    total = sum(b.size for b in blocks)
    scheduler = {key: os.environ[key] for key in _SCHEDULER_VARIABLES if key in os.environ}
    log.info(
        "shard %s of %s: %d blocks, %d HVPs; %s",
        scatter_item,
        store.path,
        len(blocks),
        total,
        scheduler,
    )
    digests: dict[str, str] = {}
    started, done = time.perf_counter(), 0
    for block in blocks:
        for name, (start, values) in measure(block).items():
            digests[f"{name}:{start}"] = store.write(name, start, values)
        done += block.size
        elapsed = time.perf_counter() - started
        log.info(
            "shard %s: %d / %d HVPs (%.1f s, ETA %.1f s)",
            scatter_item,
            done,
            total,
            elapsed,
            elapsed / done * (total - done),
        )
    dev = op.device
    write_json_atomic(
        receipt_path,
        {
            "store_id": store.store_id,
            "identity": hessian_facts(provenance),
            "param_hash": provenance["param_hash"],
            "shard": scatter_item,
            "blocks": [b.to_list() for b in blocks],
            "digests": digests,
            "hessian_set": provenance["hessian_set"]["points_sha256"],
            "batch_size": op.batch_size,
            "hvps": op.num_products,
            "determinism": {**determinism_settings(), "rechecks_passed": op.rechecks},
            "hvp_seconds": op.seconds,
            "seconds": time.perf_counter() - started,
            "device": torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else platform.processor() or "cpu",
            "host": platform.node(),
            "torch": torch.__version__,
            "environment": scheduler,
        },
    )


def measure_sketch_shard(
    *,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    store_path: str | Path,
    scatter_item: str,
    receipt_path: str | Path,
    device: str = "auto",
) -> None:
    """Measure the blocks owned by one shard, write them into the store, then the receipt."""
    deterministic_mode()
    parse_scatter_item(scatter_item)
    sketch = ZarrSketch.open(store_path, mode="r+")
    dev = pick_device(device)
    op, provenance = _operator_for(trajectory_path, step, hessian, sketch, dev)

    def measure(block: Block) -> dict[str, tuple[int, torch.Tensor]]:
        return measure_block(sketch.spec, op, block, dtype=DTYPES[hessian.dtype], device=dev)

    _run_shard(sketch, scatter_item, receipt_path, op, provenance, measure)


def measure_wave_shard(
    *,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    store_path: str | Path,
    scatter_item: str,
    receipt_path: str | Path,
    device: str = "auto",
) -> None:
    """Apply the Hessian to this shard's blocks of a wave's ``V``; write ``HV``, then the receipt.

    Each block of ``V`` is checked against the digest recorded when the wave was created.
    """
    deterministic_mode()
    parse_scatter_item(scatter_item)
    wave = WaveStore.open(store_path, mode="r+")
    dev = pick_device(device)
    op, provenance = _operator_for(trajectory_path, step, hessian, wave, dev)
    dtype = DTYPES[hessian.dtype]

    def measure(block: Block) -> dict[str, tuple[int, torch.Tensor]]:
        v = wave.read_block_of_v(block).to(device=dev, dtype=dtype)
        return {"HV": (block.start, op(v).cpu())}

    _run_shard(wave, scatter_item, receipt_path, op, provenance, measure)
