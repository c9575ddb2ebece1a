"""Faults injected for real into copies of one clean tiny run: each is caught naming the file,
nothing wrong is left in place, and a plain rerun (never a forced one) repairs the run bit for
bit (every table, HDF5 dataset and Zarr array equal to the clean run's).

Three copies share the faults that do not hide one another (a fault in one Hessian blocks the
readers of its whole set): each copy gets one faulted run (``--keep-going``) and one plain
rerun. The faults are those of the README's table "Faults and what each gets".
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
import torch
import zarr
from workflow_helpers import (
    RUN,
    TINY,
    assert_same_results,
    copy_run,
    planned_jobs,
    snakemake,
    with_changes,
)

from hessketch.cli import main as hessketch_main
from hessketch.errors import IntegrityError, SketchStoreError
from hessketch.pipeline.hessian_at_step import HessianSpec, check_store_is_current
from hessketch.pipeline.hessian_set import check_set_against_data, points_sha256
from hessketch.provenance import verify_run
from hessketch.store import read_json, write_json_atomic

pytestmark = pytest.mark.workflow

HESS = f"{RUN}/hessian"


@dataclass
class Faulted:
    """A copy of the clean run with faults injected, after one faulted and one plain run."""

    workdir: Path
    before: list  # the breaks `hessketch verify` reported before any run
    first: str  # what the faulted run printed
    first_rc: int
    second: str  # what the plain rerun printed
    second_rc: int

    def quarantined(self, relative: str) -> list[Path]:
        """The quarantine copies the runs kept of ``relative`` (a path under results/<run>/)."""
        folder = self.workdir / RUN / "quarantine" / Path(relative).parent
        return sorted(folder.glob(f"{Path(relative).name}.*"))


def _edit_json(path: Path, **changes) -> None:
    """Edit a JSON result and recompute its own checksum (what a careful tamperer does)."""
    write_json_atomic(path, {**read_json(path, "result"), **changes})


def _flip(path: Path, offset: int, keep_times: bool = False) -> None:
    times = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    if keep_times:  # bit rot: the times stay
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def _chunk_offset(path: Path, dataset: str) -> int:
    with h5py.File(path, "r") as f:
        return f[dataset].id.get_chunk_info(0).byte_offset + 64


def _run_faulted(workdir: Path, config: dict, *forced: str) -> Faulted:
    before = verify_run(workdir / RUN)
    args = ["--keep-going", *(("--forcerun", *forced) if forced else ())]
    first = snakemake(workdir, *args, config=config)
    second = snakemake(workdir, config=config)
    return Faulted(
        workdir,
        before,
        first.stdout + first.stderr,
        first.returncode,
        second.stdout + second.stderr,
        second.returncode,
    )


@pytest.fixture(scope="module")
def copy_a(tiny_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Faulted:
    """Misplaced eigenpairs (another method's, another set's), a stale store copied in with
    its old times, a receipt edited with its checksum recomputed."""
    clean, config = tiny_run
    work = copy_run(clean, tmp_path_factory.mktemp("faults-a") / "work")
    h = work / HESS
    shutil.copy(  # cp, not cp -a: the copy is new
        h / "set~train/step~0/method~exact/eigenpairs.h5",
        h / "set~train/step~0/method~sketched/eigenpairs.h5",
    )
    shutil.copy(
        h / "set~test/step~200/method~sketched/eigenpairs.h5",
        h / "set~train/step~200/method~sketched/eigenpairs.h5",
    )
    # a store made for other parameters, in place with the old times (cp -a of a stale copy)
    store = h / "set~test/step~0/sketch.zarr"
    meta = store / "zarr.json"
    times = meta.stat()
    body = json.loads(meta.read_text())
    body["attributes"]["provenance"]["param_hash"] = "0" * 64
    meta.write_text(json.dumps(body))
    os.utime(meta, ns=(times.st_atime_ns, times.st_mtime_ns))
    receipt = h / "set~test/step~200/receipts/shard~1-of-2.json"
    _edit_json(receipt, device="NVIDIA H100 80GB HBM3")
    forced = f"{HESS}/set~test/step~0/method~sketched/eigenpairs.h5"
    return _run_faulted(work, config, forced)


@pytest.fixture(scope="module")
def copy_b(tiny_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Faulted:
    """A flipped sketch chunk (bit rot), a damaged eigenpair file, a summary edited with its
    checksum recomputed."""
    clean, config = tiny_run
    work = copy_run(clean, tmp_path_factory.mktemp("faults-b") / "work")
    h = work / HESS
    chunk = h / "set~train/step~0/sketch.zarr/Y/c/0/0"
    _flip(chunk, chunk.stat().st_size // 2, keep_times=True)
    exact = h / "set~train/step~200/method~exact/eigenpairs.h5"
    _flip(exact, _chunk_offset(exact, "eigenvectors"))
    _edit_json(h / "set~test/step~0/method~exact/summary.json", overlap=0.5)
    forced = f"{HESS}/set~train/step~0/method~sketched/eigenpairs.h5"
    return _run_faulted(work, config, forced)


@pytest.fixture(scope="module")
def copy_c(tiny_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Faulted:
    """A Hessian set edited with its checksum recomputed, another one damaged."""
    clean, config = tiny_run
    work = copy_run(clean, tmp_path_factory.mktemp("faults-c") / "work")
    _edit_points(work / HESS / "set~train/points.h5", row=0, delta=1.0)
    damaged = work / HESS / "set~test/points.h5"
    _flip(damaged, _chunk_offset(damaged, "inputs"))
    return _run_faulted(work, config)


def test_exact_eigenpairs_copied_over_the_sketched(copy_a: Faulted) -> None:
    here = f"{HESS}/set~train/step~0/method~sketched/eigenpairs.h5"
    assert copy_a.first_rc != 0
    assert f"{here} holds method exact, but its path says method sketched" in copy_a.first
    assert "set~train/step~0/method~exact/eigenpairs.h5)" in copy_a.first  # where it belongs
    assert copy_a.quarantined(here.removeprefix(RUN + "/"))
    assert copy_a.second_rc == 0, copy_a.second[-3000:]


def test_another_sets_eigenpairs_copied_in(copy_a: Faulted) -> None:
    here = f"{HESS}/set~train/step~200/method~sketched/eigenpairs.h5"
    assert f"{here} holds set test, but its path says set train" in copy_a.first
    assert copy_a.quarantined(here.removeprefix(RUN + "/"))


def test_a_stale_store_copied_in_with_its_old_times(copy_a: Faulted) -> None:
    store = f"{HESS}/set~test/step~0/sketch.zarr"
    # a plain dry run cannot see it (its times are old); verify does, and a reader refuses it
    assert any(b.path == store + "/zarr.json" or b.path == store for b in copy_a.before), [
        b.path for b in copy_a.before
    ]
    assert f"{store} is not the file that rule create_sketch_store wrote" in copy_a.first
    assert copy_a.quarantined(store.removeprefix(RUN + "/"))


def test_a_receipt_edited_with_its_checksum_recomputed(copy_a: Faulted) -> None:
    receipt = f"{HESS}/set~test/step~200/receipts/shard~1-of-2.json"
    assert f"{receipt} is not the file that rule measure_sketch_shard wrote" in copy_a.first
    assert copy_a.quarantined(receipt.removeprefix(RUN + "/"))


def test_a_flipped_sketch_chunk(copy_b: Faulted) -> None:
    assert copy_b.first_rc != 0
    assert f"{HESS}/set~train/step~0/sketch.zarr: array Y" in copy_b.first
    assert copy_b.quarantined("hessian/set~train/step~0/receipts/shard~1-of-2.json")
    assert copy_b.second_rc == 0, copy_b.second[-3000:]


def test_a_damaged_eigenpair_file(copy_b: Faulted) -> None:
    damaged = f"{HESS}/set~train/step~200/method~exact/eigenpairs.h5"
    assert f"{damaged} is not the file that rule exact_hessian wrote" in copy_b.first
    assert copy_b.quarantined(damaged.removeprefix(RUN + "/"))


def test_a_summary_edited_with_its_checksum_recomputed(copy_b: Faulted) -> None:
    summary = f"{HESS}/set~test/step~0/method~exact/summary.json"
    assert f"{summary} is not the file that rule compute_overlap wrote" in copy_b.first
    assert copy_b.quarantined(summary.removeprefix(RUN + "/"))


def test_hessian_sets_edited_or_damaged(copy_c: Faulted) -> None:
    assert copy_c.first_rc != 0
    for which in ("train", "test"):
        points = f"{HESS}/set~{which}/points.h5"
        assert f"{points} is not the file that rule extract_hessian_set wrote" in copy_c.first
        assert copy_c.quarantined(points.removeprefix(RUN + "/"))
    assert copy_c.second_rc == 0, copy_c.second[-3000:]


def test_every_message_says_the_file_was_moved_and_a_plain_run_repairs(
    copy_a: Faulted, copy_b: Faulted, copy_c: Faulted
) -> None:
    for faulted in (copy_a, copy_b, copy_c):
        assert "a plain `snakemake` regenerates it" in faulted.first
        for line in faulted.first.splitlines():  # no advice to force a rerun beside it
            assert "regenerates it" not in line or "--forcerun" not in line, line


@pytest.mark.parametrize("which", ["copy_a", "copy_b", "copy_c"])
def test_a_plain_rerun_repairs_bit_for_bit(
    which: str, request: pytest.FixtureRequest, tiny_run: tuple[Path, dict]
) -> None:
    faulted: Faulted = request.getfixturevalue(which)
    assert faulted.second_rc == 0, faulted.second[-3000:]
    assert_same_results(tiny_run[0] / RUN, faulted.workdir / RUN)
    assert verify_run(faulted.workdir / RUN) == []
    assert planned_jobs(snakemake(faulted.workdir, "-n", config=tiny_run[1])) == {}


def test_verify_reports_each_break_and_repair_moves_it_aside(
    tiny_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clean, config = tiny_run
    assert hessketch_main(["verify", str(clean / RUN)]) == 0
    rule = snakemake(clean, "verify", config=config)  # the same walk as a rule
    assert rule.returncode == 0, rule.stderr[-3000:]
    assert "the chain is whole" in (clean / RUN / "logs" / "verify.log").read_text()
    work = copy_run(clean, tmp_path / "work")
    summary = work / HESS / "set~train/step~0/method~sketched/summary.json"
    times = summary.stat()
    _edit_json(summary, overlap=0.9)
    os.utime(summary, ns=(times.st_atime_ns, times.st_mtime_ns))  # its times: nothing reruns
    assert planned_jobs(snakemake(work, "-n", config=config)) == {}
    assert hessketch_main(["verify", str(work / RUN), "--repair"]) == 1
    out = capsys.readouterr().out
    assert f"{HESS}/set~train/step~0/method~sketched/summary.json\tchanged since" in out
    assert summary.stat().st_mtime == 0  # kept in place, marked out of date
    assert list((work / RUN / "quarantine").rglob("summary.json.*"))
    assert planned_jobs(snakemake(work, "-n", config=config)).get("compute_overlap") == 1


def test_stores_and_sets_are_checked_against_their_sources(tiny_run: tuple[Path, dict]) -> None:
    """The checks behind the faults above, as library calls: a store of other parameters, a
    Hessian set whose points are not those of the data it names."""
    clean, _ = tiny_run
    h = clean / HESS / "set~train"
    spec = HessianSpec(points=str(h / "points.h5"))
    traj = clean / RUN / "train/trajectory.h5"
    other = zarr.open_group(str(h / "step~200/sketch.zarr"), mode="r").attrs["provenance"]
    with pytest.raises(SketchStoreError, match="was made for parameters"):
        check_store_is_current(dict(other), h / "step~0/sketch.zarr", traj, 0, spec)
    check_set_against_data(h / "points.h5")  # the clean set: its points are the data's
    with pytest.raises(IntegrityError, match="its points are not the points"):
        check_set_against_data(_edited_set(h / "points.h5", clean / "edited" / "points.h5"))


def _edited_set(source: Path, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, to)
    _edit_points(to, row=1, delta=-0.5)
    return to


def _edit_points(path: Path, row: int, delta: float) -> None:
    """Change one input value of a Hessian set and recompute its ``points_sha256``."""
    with h5py.File(path, "r+") as f:
        f["inputs"][row, 0, 0, 0] += delta
        description = json.loads(f.attrs["description"])
        description["points_sha256"] = points_sha256(
            torch.from_numpy(f["inputs"][...]), torch.from_numpy(f["labels"][...])
        )
        f.attrs["description"] = json.dumps(description, sort_keys=True)


def test_training_that_does_not_learn_is_stopped(tmp_path: Path, tiny_run) -> None:
    _, config = tiny_run
    diverging = with_changes(config, training={"lr": 1e6})
    result = snakemake(tmp_path, f"{RUN}/train/trajectory.h5", config=diverging)
    assert result.returncode != 0
    log = (tmp_path / RUN / "logs" / "train_model.log").read_text()
    assert "training did not learn" in log and "lr 1e+06" in log, log[-2000:]
    assert "at step 200" in log
    assert not (tmp_path / RUN / "train" / "trajectory.h5").exists()
    kept = with_changes(diverging, training={"stop_if_not_learning": False})
    assert snakemake(tmp_path, f"{RUN}/train/trajectory.h5", config=kept).returncode == 0
    with h5py.File(tmp_path / RUN / "train" / "trajectory.h5", "r") as f:
        learned, why = (json.loads(f.attrs[key]) for key in ("learned", "not_learning"))
    assert learned is False and "training loss rose" in why


def test_an_unchanged_config_shows_no_params_changes(tiny_run: tuple[Path, dict]) -> None:
    """Every rule's params are plain values that a rerun computes alike: Snakemake's summary
    says "ok" for every output. (`--list-changes params` of Snakemake 9.27 lists every output
    that has recorded params, changed or not; the README says so.)"""
    clean, config = tiny_run
    result = snakemake(clean, "--summary", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:] if "\t" in line]
    assert rows and all(row[4] == "ok" for row in rows), [r for r in rows if r[4] != "ok"][:5]
    changed = with_changes(config, overlap={"random_masks": 3})
    result = snakemake(clean, "--summary", config=changed)
    statuses = {row.split("\t")[4] for row in result.stdout.splitlines()[1:] if "\t" in row}
    assert "params changed" in statuses


assert TINY["sketch"]["shards"] == 2  # the receipts named above
