"""The workflow as the Snakemake workflow catalog and its users expect to find it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_the_config_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_study_config_is_described() -> None:
    readme = (REPO / "config" / "README.md").read_text()
    for study in sorted((REPO / "config").glob("*.yaml")):
        assert f"`{study.name}`" in readme, f"config/README.md does not describe {study.name}"


def test_the_catalog_file_has_the_catalogs_keys() -> None:
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    assert any(usage["software-stack-deployment"].values())
    assert usage["report"] is True
