"""The workflow reused as a Snakemake module from a user's own Snakefile.

A user's workflow imports every rule of this one under a prefix (``use rule * from hessketch
as hessketch_*``), adds a rule of its own that reads one of the study's tables, and runs the
tiny study from scratch; its results must equal those of the tiny study run directly: the same
files, the same words, the numbers to float32 round-off. Two runs on one machine are not bit
for bit equal (seen: 1e-6 relative at step 200, 2e-5 on an unconverged tail eigenvalue).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from workflow_helpers import RUN, SNAKEFILE, SNAKEMAKE

from hessketch.pipeline.common import read_table

pytestmark = pytest.mark.workflow

USER_SNAKEFILE = """\
configfile: "config.yaml"


module hessketch:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from hessketch as hessketch_*


rule all:
    default_target: True
    input:
        rules.hessketch_all.input,
        "mine/certified.txt",


rule certified_pairs:
    input:
        "{run}/hessian/set~train/step~0/method~sketched/certificate.tsv",
    output:
        "mine/certified.txt",
    shell:
        "wc -l < {{input}} > {{output}}"
"""


@pytest.fixture(scope="module")
def user_workflow(tiny_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    """A user's workflow around hessketch, run once; returns (its folder, the direct run's)."""
    direct, config = tiny_run
    user = tmp_path_factory.mktemp("user-workflow")
    (user / "config.yaml").write_text(yaml.safe_dump(config))  # the same data files
    (user / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=SNAKEFILE, run=RUN))
    result = subprocess.run(
        [SNAKEMAKE, "--cores", "2"], cwd=user, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return user, direct, result


def test_the_module_run_equals_the_direct_run(user_workflow) -> None:
    user, direct, _ = user_workflow
    a, b = direct / RUN, user / RUN
    skip = ("logs", "benchmarks", "provenance", "quarantine")

    def files(root: Path, suffix: str) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob(f"*{suffix}")
            if p.relative_to(root).parts[0] not in skip
        }

    assert files(a, ".tsv") == files(b, ".tsv") and files(a, ".h5") == files(b, ".h5")
    assert files(a, ".zarr") == files(b, ".zarr")
    for name in sorted(files(a, ".tsv") - {Path("train/metrics.tsv")}):
        x, y = read_table(a / name), read_table(b / name)
        assert x.keys() == y.keys(), name
        for column in x:
            if x[column].dtype.kind in "US":
                np.testing.assert_array_equal(x[column], y[column], err_msg=f"{name} {column}")
            else:
                np.testing.assert_allclose(
                    x[column], y[column], rtol=1e-3, atol=1e-6, err_msg=f"{name} {column}"
                )
    for name in sorted(files(a, "eigenpairs.h5")):
        with h5py.File(a / name) as f, h5py.File(b / name) as g:
            np.testing.assert_allclose(
                f["eigenvalues"][:], g["eigenvalues"][:], rtol=1e-3, atol=1e-6
            )


def test_the_rules_carry_the_prefix_and_the_users_rule_ran(user_workflow) -> None:
    user, _, result = user_workflow
    log = result.stderr
    assert "rule hessketch_train_model:" in log and "rule train_model:" not in log
    assert "localrules directive specifies rules that are not present" not in log
    certificate = user / RUN / "hessian/set~train/step~0/method~sketched/certificate.tsv"
    lines = certificate.read_text().count("\n")
    assert int((user / "mine" / "certified.txt").read_text()) == lines > 1


def test_nothing_to_do_after_the_module_run(user_workflow) -> None:
    user, _, _ = user_workflow
    result = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "-n"], cwd=user, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
