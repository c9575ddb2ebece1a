"""Deployment with snakedeploy, as the Snakemake workflow catalog tells users to deploy.

`snakedeploy deploy-workflow <repo> <dest> --tag <release>` copies the workflow's `config/` and
`profiles/` into `<dest>` and writes `<dest>/workflow/Snakefile`, a user workflow that imports
this one as a module (`module hessketch: snakefile: github("owner/hessketch", path=...)`). Here
the source is a local copy of this working tree (snakedeploy's local provider, which needs no
network): it writes the module's Snakefile path relative to the source repository, so the
test, like a user of a local clone, points it at the clone. The deployed workflow, given the
tiny study as its config/config.yaml, must plan exactly the jobs of the workflow run directly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from idx_files import write_fake_mnist
from workflow_helpers import REPO, SNAKEFILE, TINY, planned_jobs, snakemake, with_changes

SNAKEDEPLOY = shutil.which("snakedeploy", path=str(Path(sys.executable).parent))
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
pytestmark = pytest.mark.skipif(SNAKEDEPLOY is None, reason="snakedeploy is not installed")


def _copy_of_the_working_tree(to: Path) -> Path:
    """What `git clone` would give, plus this tree's uncommitted files (not results/, .venv).

    Without git (a checkout exported as files), the tree minus its ignored kinds of folders.
    """
    try:
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        ignore = shutil.ignore_patterns(
            ".git", ".venv*", "results", ".snakemake", "__pycache__", "*.egg-info", ".*_cache"
        )
        shutil.copytree(REPO, to, ignore=ignore, dirs_exist_ok=True)
        return to
    for name in files:
        source = REPO / name
        if source.is_file() and not name.startswith("results/"):
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    clone = _copy_of_the_working_tree(tmp_path_factory.mktemp("hessketch"))
    dest = tmp_path_factory.mktemp("deployed") / "my-study"
    result = subprocess.run(
        [
            SNAKEDEPLOY,
            "deploy-workflow",
            str(clone),
            str(dest),
            "--branch",
            "main",
            "--name",
            "hessketch",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = with_changes(TINY, data={"root": str(write_fake_mnist(dest / "data"))})
    return clone, dest, config


def test_snakedeploy_copies_the_configs_and_profiles(deployed) -> None:
    clone, dest, _ = deployed
    for folder in ("config", "profiles"):
        ours = sorted(p.relative_to(clone / folder) for p in (clone / folder).rglob("*"))
        assert sorted(p.relative_to(dest / folder) for p in (dest / folder).rglob("*")) == ours
    snakefile = (dest / "workflow" / "Snakefile").read_text()
    assert re.search(r"^module hessketch:", snakefile, re.M), snakefile
    assert "use rule * from hessketch" in snakefile
    assert f'"{SNAKEFILE.relative_to(REPO)}"' in snakefile  # the local provider's relative path


def test_the_deployed_workflow_plans_what_the_workflow_plans(deployed, tmp_path: Path) -> None:
    clone, dest, config = deployed
    snakefile = dest / "workflow" / "Snakefile"
    relative = f'"{SNAKEFILE.relative_to(REPO)}"'
    snakefile.write_text(
        snakefile.read_text().replace(relative, f'"{clone / SNAKEFILE.relative_to(REPO)}"')
    )
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config))  # the user's study
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "2"], cwd=dest, capture_output=True, text=True, timeout=300
    )
    deployed_jobs = planned_jobs(result)
    direct = planned_jobs(snakemake(tmp_path, "-n", config=config))
    assert deployed_jobs == direct and deployed_jobs["measure_sketch_shard"] > 0
