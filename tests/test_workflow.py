"""The workflow as code: lint, dry runs, config errors, a tiny real run, rerun behaviour."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from idx_files import write_fake_mnist

from hessketch.metrics import magnitude_order
from hessketch.pipeline.common import read_eigenpairs, read_table
from hessketch.trajectory import Trajectory

pytestmark = pytest.mark.workflow

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
        new[section].update(values)
    return new


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("tiny")
    config = with_changes(TINY, data={"root": str(write_fake_mnist(workdir / "data"))})
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config


def test_lint_is_clean() -> None:
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_dry_run_of_the_default_study(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config))
    steps, exact = len(config["hessian"]["steps"]), len(config["exact"]["steps"])
    assert jobs == {
        "train_model": 1,
        "create_sketch_store": steps,
        "measure_sketch_shard": steps * config["sketch"]["shards"],
        "reduce_sketch": steps,
        "exact_hessian": exact,
        "compute_overlap": steps + exact,
        "compare_to_exact": 1,
        "compute_stability": 1,
        "plot_overlap_over_training": 1,
        "plot_overlap_vs_k": 1,
        "plot_spectra": 1,
        "plot_training_curves": 1,
    }
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--set-scatter", "measure=7", config=config))
    assert jobs["measure_sketch_shard"] == 7 * steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sketch": {"k": 20, "wrong_key": 1}}, "wrong_key"),
        ({"sketch": {"k": 20, "s": 10}}, "sketch.s"),
        ({"hessian": {"steps": [0, 999], "set": {"train": 50}}}, "training.steps"),
        ({"overlap": {"report_k": 999}}, "overlap.report_k"),
        ({"hessian": {"steps": [0], "set": {"train": 55}}}, "hessian.set.train"),
        ({"training": {"lr": -1}}, "lr"),
    ],
)
def test_config_errors_name_the_key_before_any_job(
    tmp_path: Path, changes: dict, message: str
) -> None:
    config = json.loads(json.dumps(TINY))
    for section, values in changes.items():
        config[section] = values if section != "overlap" else {**config[section], **values}
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_data_names_the_file(tmp_path: Path) -> None:
    config = with_changes(TINY, data={"root": str(tmp_path / "no-data")})
    result = snakemake(tmp_path, RUN + "/train/trajectory.h5", config=config)
    assert result.returncode != 0
    assert "train_model.log" in result.stderr, result.stderr[-3000:]
    log = (tmp_path / RUN / "logs" / "train_model.log").read_text()
    assert "no-data" in log and "does not exist" in log


def test_tiny_run_outputs(tiny_run: tuple[Path, dict]) -> None:
    workdir, config = tiny_run
    run = workdir / RUN
    for name in ("overlap_over_training", "overlap_vs_k", "spectra", "training_curves"):
        for ext in ("pdf", "png"):
            assert (run / "figures" / f"{name}.{ext}").stat().st_size > 1000
    # the summary's overlap equals a direct computation from the eigenpairs and the parameters
    k = config["overlap"]["report_k"]
    for step in config["hessian"]["steps"]:
        summary = json.loads(
            (run / f"hessian/step~{step}/method~sketched/summary.json").read_text()
        )
        _, vectors, _ = read_eigenpairs(run / f"hessian/step~{step}/method~sketched/eigenpairs.h5")
        mask = magnitude_order(Trajectory.open(run / "train/trajectory.h5").params(step))[:k]
        direct = float(vectors[mask, :k].square().sum() / k)
        assert summary["overlap"] == pytest.approx(direct, rel=1e-12)
        assert summary["chance"] == pytest.approx(k / vectors.shape[0], rel=1e-15)
        # every eigenvector file is orthonormal to float32 precision
        gram = vectors.T @ vectors
        torch.testing.assert_close(
            gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5, rtol=0
        )
    comparison = read_table(run / "comparison.tsv")
    assert list(comparison["step"]) == config["exact"]["steps"]
    # tiny net, k = 40 of D = 1,210: the median relative error of the top-10 eigenvalues is
    # below 2 % after training (decaying spectrum) and below 10 % at the flat random init
    errors = comparison["median_rel_error_top10"]
    assert errors[-1] < 0.02 and np.all(errors < 0.10)
    report = json.loads((run / "hessian/step~200/method~sketched/report.json").read_text())
    assert report["hvps"] == config["sketch"]["s"] + config["sketch"]["probes"]
    assert len(report["shards"]) == config["sketch"]["shards"]


def test_rerun_behaviour(tiny_run: tuple[Path, dict]) -> None:
    workdir, config = tiny_run
    assert planned_jobs(snakemake(workdir, "-n", config=config)) == {}
    plots = {
        "plot_overlap_over_training": 1,
        "plot_overlap_vs_k": 1,
        "plot_spectra": 1,
        "plot_training_curves": 1,
    }
    restyled = with_changes(config, plots={"style": {"dpi": 80}})
    assert planned_jobs(snakemake(workdir, "-n", config=restyled)) == plots
    steps = len(config["hessian"]["steps"])
    new_k = with_changes(config, sketch={"k": 30, "s": 60}, overlap={"report_k": 20})
    assert planned_jobs(snakemake(workdir, "-n", config=new_k)) == {
        "create_sketch_store": steps,
        "measure_sketch_shard": steps * config["sketch"]["shards"],
        "reduce_sketch": steps,
        "compute_overlap": steps,  # the exact ones are independent of the sketch
        "compare_to_exact": 1,
        "compute_stability": 1,
        **{rule: 1 for rule in plots if rule != "plot_training_curves"},
    }
    longer = with_changes(config, training={"steps": 300})
    jobs = planned_jobs(snakemake(workdir, "-n", config=longer))
    assert jobs["train_model"] == 1 and jobs["exact_hessian"] == len(config["exact"]["steps"])
    assert jobs["measure_sketch_shard"] == steps * config["sketch"]["shards"]
    # regenerate every figure and nothing else
    forced = snakemake(workdir, "figures", "--forcerun", *plots, config=config)
    assert planned_jobs(forced) == plots  # the job table of the real run
    assert planned_jobs(snakemake(workdir, "-n", config=config)) == {}
