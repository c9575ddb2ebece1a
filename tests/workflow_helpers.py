"""Running the workflow of this repository from tests: the tiny study, dry runs, copies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml
import zarr
from idx_files import write_fake_mnist

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
RUN = f"results/{TINY['run']}"


def snakemake(workdir: Path, *args: str, config: dict | None = None, timeout: int = 600):
    """Run the workflow of this repository in ``workdir`` (with ``config`` written there)."""
    cmd = [SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "2", *args]
    if config is not None:  # last: --configfile takes several values
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule → job count from a dry run's 'Job stats' table (empty if nothing to do)."""
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    table = (result.stdout + result.stderr).split("Job stats:")
    if len(table) < 2:
        return counts
    for line in table[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) not in ("all", "figures", "total"):  # target rules, not jobs
            counts[m.group(1)] = int(m.group(2))
    return counts


def with_changes(config: dict, **changes: dict) -> dict:
    new = json.loads(json.dumps(config))
    for section, values in changes.items():
        new.setdefault(section, {}).update(values)
    return new


def run_tiny(workdir: Path) -> dict:
    """Run the tiny study in ``workdir`` (its data written there); return its config."""
    config = with_changes(TINY, data={"root": str(write_fake_mnist(workdir / "data"))})
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    return config


def copy_run(workdir: Path, to: Path) -> Path:
    """A copy of a finished run's working directory (its data stay where they are)."""
    shutil.copytree(workdir, to, symlinks=True, ignore=shutil.ignore_patterns("data"))
    return to


def assert_same_results(clean: Path, other: Path) -> None:
    """Every table, HDF5 dataset and Zarr array of ``clean`` equals ``other``'s, bit for bit
    (the training table but for its wall-clock column); both have the same such files."""

    def results(root: Path) -> set[str]:
        found = set()
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if relative.parts[0] in ("logs", "benchmarks", "provenance", "quarantine"):
                continue
            if (path.suffix in (".tsv", ".h5") and path.is_file()) or path.suffix == ".zarr":
                found.add(str(relative))
        return found

    names = results(clean)
    assert names == results(other)
    for name in sorted(names):
        a, b = clean / name, other / name
        if name.endswith("metrics.tsv"):
            drop = [line.rsplit("\t", 1)[0] for line in a.read_text().splitlines()]
            assert drop == [line.rsplit("\t", 1)[0] for line in b.read_text().splitlines()]
        elif name.endswith(".tsv"):
            assert a.read_bytes() == b.read_bytes(), name
        elif name.endswith(".h5"):
            _same_h5(a, b, name)
        else:
            ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
            assert sorted(ga.array_keys()) == sorted(gb.array_keys()), name
            for key in ga.array_keys():
                assert _equal(ga[key][...], gb[key][...]), (name, key)


def _same_h5(a: Path, b: Path, name: str) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        keys: list[str] = []
        fa.visit(lambda k: keys.append(k) if isinstance(fa[k], h5py.Dataset) else None)
        for key in keys:
            assert _equal(fa[key][...], fb[key][...]), (name, key)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN equal to NaN, as an unwritten Zarr entry)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
