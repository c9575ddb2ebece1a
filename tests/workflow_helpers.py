"""Running the workflow of this repository from tests: the tiny study, dry runs, copies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from idx_files import write_fake_mnist

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
RUN = f"results/{TINY['run']}"


def snakemake(workdir: Path, *args: str, config: dict | None = None, timeout: int = 600):
    """Run the workflow of this repository in ``workdir`` (with ``config`` written there)."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
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
