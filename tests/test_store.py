"""The sharded Zarr sketch: shard-count independence, receipts, crash and rerun, staleness."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import zarr
from idx_files import write_fake_mnist

from hessketch.errors import IntegrityError, SketchStoreError
from hessketch.models import build_model, flatten_params
from hessketch.pipeline.common import DataSpec, EigenpairWriter, read_eigenpairs
from hessketch.pipeline.hessian_at_step import HessianSpec
from hessketch.pipeline.hessian_set import extract_hessian_set, read_hessian_set
from hessketch.pipeline.measure import create_sketch_store, measure_sketch_shard
from hessketch.pipeline.reduce import reduce_sketch_store
from hessketch.sketch import SketchSpec
from hessketch.store import ZarrSketch, create_store, write_json_atomic
from hessketch.trajectory import write_trajectory

MODEL = {"name": "mlp", "widths": [64, 8, 10]}
DATA = {"dataset": "mnist", "image_size": 8}


def extract(root: Path, folder: Path) -> None:
    """The Hessian set of the stores here: 30 train points (3 per class), beside a trajectory."""
    spec = DataSpec(**DATA, root=str(root))
    extract_hessian_set(data=spec, split="train", n=30, path=folder / "points.h5")


def hessian_for(trajectory: Path) -> HessianSpec:
    """The Hessian of the set extracted beside ``trajectory``."""
    return HessianSpec(points=str(trajectory.parent / "points.h5"), batch_size=20)


SKETCH = {"k": 12, "s": 30, "seed": 4, "test_matrix": "ssrft", "block_size": 4, "probes": 3}


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root, n_train=100, n_test=50)
    torch.manual_seed(1)
    model = build_model(MODEL)
    theta = flatten_params(model)
    path = root / "trajectory.h5"
    meta = {"model": MODEL, "data": {**DATA, "root": str(root)}}
    write_trajectory(path, [0, 5], [theta, theta * 1.5], meta)
    extract(root, root)
    return path


def shard(trajectory: Path, store: Path, item: str, receipt: Path, step: int = 0) -> None:
    measure_sketch_shard(
        trajectory_path=trajectory,
        step=step,
        hessian=hessian_for(trajectory),
        store_path=store,
        scatter_item=item,
        receipt_path=receipt,
        device="cpu",
    )


def measure(trajectory: Path, store: Path, shards: int, step: int = 0) -> list[Path]:
    create_sketch_store(
        trajectory_path=trajectory,
        step=step,
        hessian=hessian_for(trajectory),
        sketch=SKETCH,
        store_path=store,
    )
    receipts = []
    for i in range(1, shards + 1):
        receipt = store.parent / f"receipts-{store.name}" / f"shard~{i}-of-{shards}.json"
        shard(trajectory, store, f"{i}-of-{shards}", receipt, step)
        receipts.append(receipt)
    return receipts


def arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {name: group[name][:] for name in ("Y", "Z", "PhiY", "HOmega")}


def reduce(store: Path, receipts: list[Path], out: Path) -> tuple[np.ndarray, dict]:
    reduce_sketch_store(
        store_path=store,
        receipt_paths=receipts,
        eigenpairs_path=out / "eig.h5",
        report_path=out / "report.json",
    )
    with h5py.File(out / "eig.h5", "r") as f:
        return f["eigenvalues"][:], json.loads((out / "report.json").read_text())


def test_one_and_seven_shards_give_identical_sketches(trajectory: Path, tmp_path: Path) -> None:
    one = measure(trajectory, tmp_path / "one.zarr", 1)
    seven = measure(trajectory, tmp_path / "seven.zarr", 7)
    a, b = arrays(tmp_path / "one.zarr"), arrays(tmp_path / "seven.zarr")
    for name in a:
        assert not np.isnan(a[name]).any(), name
        assert a[name].tobytes() == b[name].tobytes(), name
    values_one, report = reduce(tmp_path / "one.zarr", one, tmp_path / "r1")
    values_seven, _ = reduce(tmp_path / "seven.zarr", seven, tmp_path / "r7")
    assert values_one.tobytes() == values_seven.tobytes()
    assert report["hvps"] == SKETCH["s"] + SKETCH["probes"]
    receipt = json.loads(seven[0].read_text())
    assert receipt["determinism"]["cuda_matmul_tf32"] is False
    assert receipt["determinism"]["cudnn_tf32"] is False
    assert receipt["determinism"]["deterministic_algorithms"] is True
    assert receipt["determinism"]["rechecks_passed"] >= 0 and receipt["batch_size"] == 20


def test_missing_receipt_is_reported(trajectory: Path, tmp_path: Path) -> None:
    receipts = measure(trajectory, tmp_path / "s.zarr", 3)
    with pytest.raises(SketchStoreError, match="have no receipt"):
        reduce(tmp_path / "s.zarr", receipts[:2], tmp_path / "r")
    assert not (tmp_path / "r" / "eig.h5").exists()


def test_receipt_of_a_recreated_store_is_stale(trajectory: Path, tmp_path: Path) -> None:
    receipts = measure(trajectory, tmp_path / "s.zarr", 2)
    create_sketch_store(
        trajectory_path=trajectory,
        step=0,
        hessian=hessian_for(trajectory),
        sketch=SKETCH,
        store_path=tmp_path / "s.zarr",
    )
    with pytest.raises(SketchStoreError, match="re-created after this shard ran"):
        reduce(tmp_path / "s.zarr", receipts, tmp_path / "r")


def test_overwritten_chunk_is_detected(trajectory: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    receipts = measure(trajectory, store, 2)
    group = zarr.open_group(str(store), mode="r+")
    group["Y"][:, 4:8] = group["Y"][:, 4:8] * 1.0001
    with pytest.raises(SketchStoreError, match=r"array Y, columns \[4, 8\) do not match"):
        reduce(store, receipts, tmp_path / "r")


@pytest.mark.parametrize(
    ("damage", "what"),
    [("truncate", "unreadable"), ("delete", "has non-finite values")],
)
def test_a_damaged_chunk_names_array_columns_and_shard(
    trajectory: Path, tmp_path: Path, damage: str, what: str
) -> None:
    """Issue: zarr's "cannot reshape array" or "Y has non-finite values" fired first."""
    store = tmp_path / "s.zarr"
    receipts = measure(trajectory, store, 2)
    chunk = store / "Y" / "c" / "0" / "1"  # columns [4, 8): block 2, written by shard 2 of 2
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:1000])
    else:
        chunk.unlink()
    with pytest.raises(SketchStoreError) as err:
        reduce(store, receipts, tmp_path / "r")
    message = str(err.value)
    assert f"array Y, rows [0, 610), columns [4, 8) {what}" in message, message
    assert f"snakemake --forcerun {receipts[1]}" in message, message
    assert not (tmp_path / "r" / "eig.h5").exists()


def test_an_edited_receipt_is_refused(trajectory: Path, tmp_path: Path) -> None:
    """Issue: receipt fields (hvps, seconds, device) went into the report unchecked."""
    store = tmp_path / "s.zarr"
    receipts = measure(trajectory, store, 2)
    receipt = json.loads(receipts[0].read_text())
    receipts[0].write_text(json.dumps({**receipt, "hvps": 1, "device": "H200"}))
    with pytest.raises(IntegrityError, match=r"receipt .*shard~1-of-2.json does not match its"):
        reduce(store, receipts, tmp_path / "r")
    # rewritten with a valid checksum, the counts still have to add up
    write_json_atomic(receipts[0], {**receipt, "hvps": 1})
    with pytest.raises(SketchStoreError, match=r"reports 1 HVPs for blocks of \d+ columns"):
        reduce(store, receipts, tmp_path / "r")
    assert not (tmp_path / "r" / "eig.h5").exists()


def test_store_of_other_parameters_is_refused(trajectory: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    create_sketch_store(
        trajectory_path=trajectory,
        step=5,
        hessian=hessian_for(trajectory),
        sketch=SKETCH,
        store_path=store,
    )
    with pytest.raises(SketchStoreError, match="it is stale"):
        shard(trajectory, store, "1-of-1", tmp_path / "r.json")


def test_data_rewritten_in_place_is_refused_by_the_next_shard(tmp_path: Path) -> None:
    """Issue: regenerated IDX files under the same root mixed two Hessian sets in one sketch.

    Shards read only the extracted set, so a shard after the rewrite still measures the old
    points; once the set is extracted again (the workflow does: the data are its inputs), the
    next shard refuses the store.
    """
    root = write_fake_mnist(tmp_path / "data", n_train=100, n_test=50)
    torch.manual_seed(1)
    theta = flatten_params(build_model(MODEL))
    traj = tmp_path / "trajectory.h5"
    meta = {"model": MODEL, "data": {**DATA, "root": str(root)}}
    write_trajectory(traj, [0], [theta], meta)
    extract(root, tmp_path)
    store = tmp_path / "s.zarr"
    create_sketch_store(
        trajectory_path=traj, step=0, hessian=hessian_for(traj), sketch=SKETCH, store_path=store
    )
    shard(traj, store, "1-of-2", tmp_path / "r1.json")
    write_fake_mnist(root, n_train=100, n_test=50, seed=1)  # same files, same labels, new pixels
    shard(traj, store, "2-of-2", tmp_path / "r2.json")  # the shard reads the extracted set only
    before = arrays(store)
    extract(root, tmp_path)  # the workflow extracts the set again: its input data changed
    with pytest.raises(SketchStoreError, match=r"changed data files.*--forcerun .*s\.zarr"):
        shard(traj, store, "2-of-2", tmp_path / "r2b.json")
    assert not (tmp_path / "r2b.json").exists()
    after = arrays(store)
    assert all(np.array_equal(before[n], after[n], equal_nan=True) for n in before)


def test_missing_or_malformed_store(tmp_path: Path) -> None:
    from hessketch.store import ZarrSketch

    with pytest.raises(SketchStoreError, match="no sketch store"):
        ZarrSketch.open(tmp_path / "nothing.zarr")
    zarr.open_group(str(tmp_path / "bad.zarr"), mode="w").attrs["spec"] = {"dim": 3}
    with pytest.raises(SketchStoreError, match="malformed"):
        ZarrSketch.open(tmp_path / "bad.zarr")


CRASHING_SHARD = """
import os, sys
import hessketch.pipeline.measure as m
from hessketch.pipeline.hessian_at_step import HessianSpec

real, count = m.measure_block, [0]
def dying(*args, **kwargs):
    count[0] += 1
    if count[0] == 3:
        os._exit(9)  # killed midway: two blocks written, no receipt
    return real(*args, **kwargs)
m.measure_block = dying
m.measure_sketch_shard(trajectory_path=sys.argv[1], step=0, hessian=HessianSpec(**{hessian}),
                       store_path=sys.argv[2], scatter_item="1-of-1", receipt_path=sys.argv[3],
                       device="cpu")
"""


def test_shard_killed_midway_then_rerun_is_bit_identical(trajectory: Path, tmp_path: Path) -> None:
    reference = measure(trajectory, tmp_path / "ref.zarr", 1)
    store, receipt = tmp_path / "s.zarr", tmp_path / "receipt.json"
    create_sketch_store(
        trajectory_path=trajectory,
        step=0,
        hessian=hessian_for(trajectory),
        sketch=SKETCH,
        store_path=store,
    )
    code = CRASHING_SHARD.replace("{hessian}", repr(hessian_for(trajectory).__dict__))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(trajectory), str(store), str(receipt)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 9, proc.stderr
    assert not receipt.exists()
    partial = arrays(store)["Z"]
    assert np.isnan(partial).any() and not np.isnan(partial).all()  # really stopped midway
    with pytest.raises(SketchStoreError, match="have no receipt"):
        reduce(store, [], tmp_path / "r")
    shard(trajectory, store, "1-of-1", receipt)
    a, b = arrays(tmp_path / "ref.zarr"), arrays(store)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    assert (
        reduce(store, [receipt], tmp_path / "r")[0].tobytes()
        == reduce(tmp_path / "ref.zarr", reference, tmp_path / "r0")[0].tobytes()
    )


_KILLED_WRITER = """
import os, signal, sys, torch
from hessketch.pipeline.common import EigenpairWriter
from hessketch.store import create_store
from hessketch.sketch import SketchSpec
path = sys.argv[1]
if path.endswith(".h5"):
    writer = EigenpairWriter(path, 500, 4, {"method": "test"})
    writer.write_rows(slice(0, 500), torch.ones(500, 4))
else:  # a store whose creation is killed midway: its attributes are never written
    import uuid
    real, calls = uuid.uuid4, []
    def uuid4():  # the first call names the temporary, the second (store_id) never returns
        calls.append(1)
        return real() if len(calls) == 1 else os.kill(os.getpid(), signal.SIGKILL)
    uuid.uuid4 = uuid4
    create_store(path, SketchSpec(dim=500, k=4, s=8), {"param_hash": "x"})
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("name", ["eigenpairs.h5", "sketch.zarr"])
def test_temporaries_of_a_killed_writer_are_removed_by_the_next(tmp_path: Path, name: str) -> None:
    """A writer killed by SIGKILL leaves its temporary (nothing can run in the process); the
    next writer of the same output removes it, so nothing fills the disk and nothing partial
    is ever at the output's path."""
    path = tmp_path / name
    run = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], check=False)
    assert run.returncode == -signal.SIGKILL
    assert not path.exists()
    assert len(list(tmp_path.glob(f".{name}.*.tmp"))) == 1
    if name.endswith(".h5"):
        with EigenpairWriter(path, 500, 4, {"method": "test"}) as writer:
            writer.write_rows(slice(0, 500), torch.zeros(500, 4))
            writer.close(torch.arange(4.0))
        assert read_eigenpairs(path)[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    else:
        create_store(path, SketchSpec(dim=500, k=4, s=8), {"param_hash": "x"})
        assert ZarrSketch.open(path).spec.dim == 500
    assert list(tmp_path.glob(f".{name}.*.tmp")) == []


def test_a_failing_eigenpair_writer_leaves_no_temporary(tmp_path: Path) -> None:
    """An error inside the writer (here: rows of the wrong width) removes the temporary and
    leaves nothing at the path."""
    path = tmp_path / "eigenpairs.h5"
    with pytest.raises((TypeError, ValueError)), EigenpairWriter(path, 50, 2, {"m": 1}) as writer:
        writer.write_rows(slice(0, 50), torch.ones(50, 3))
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_or_edited_hessian_set_is_refused(trajectory: Path, tmp_path: Path) -> None:
    """The points a shard reads are checked: a flipped byte in a chunk or edited points are
    refused, naming the file and the command that regenerates it."""
    source = trajectory.parent / "points.h5"
    x, y, description = read_hessian_set(source)
    assert description["n"] == 30 and tuple(x.shape) == (30, 1, 8, 8)
    assert torch.equal(torch.bincount(y), torch.full((10,), 3))
    flipped = tmp_path / "flipped.h5"
    shutil.copy2(source, flipped)
    with h5py.File(flipped, "r") as f:
        offset = f["inputs"].id.get_chunk_info(0).byte_offset
    data = bytearray(flipped.read_bytes())
    data[offset + 10] ^= 0x10
    flipped.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"flipped\.h5 is missing or damaged.*--forcerun"):
        read_hessian_set(flipped)
    edited = tmp_path / "edited.h5"
    shutil.copy2(source, edited)
    with h5py.File(edited, "r+") as f:
        f["labels"][0] = (int(f["labels"][0]) + 1) % 10
    with pytest.raises(IntegrityError, match=r"edited\.h5: its points do not match"):
        read_hessian_set(edited)
