"""The workflow as code: lint, dry runs, config errors, a tiny real run, rerun behaviour."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
import zarr
from idx_files import write_fake_mnist
from workflow_helpers import REPO, RUN, SNAKEMAKE, TINY, planned_jobs, snakemake, with_changes

from hessketch.density import SpectralDensity, wasserstein_1
from hessketch.errors import IntegrityError
from hessketch.hessian import dense_matrix
from hessketch.masks import best_mask_curve
from hessketch.metrics import magnitude_order, mask_overlap_curve
from hessketch.pipeline.common import read_eigenpairs, read_table
from hessketch.pipeline.compare import compare_to_exact
from hessketch.pipeline.hessian_at_step import HessianSpec, hessian_at_step
from hessketch.pipeline.hessian_set import read_hessian_set
from hessketch.pipeline.stability import compute_stability
from hessketch.store import read_json
from hessketch.trajectory import Trajectory

pytestmark = pytest.mark.workflow


def test_lint_is_clean() -> None:
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_dry_run_of_the_default_study(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config))
    sets = len(config["hessian"]["sets"])  # train and test: each its own Hessian
    assert sets == 2
    steps = sets * len(config["hessian"]["steps"])
    exact = sets * len(config["exact"]["steps"])
    assert jobs == {
        "train_model": 1,
        "extract_hessian_set": sets,
        "create_sketch_store": steps,
        "measure_sketch_shard": steps * config["sketch"]["shards"],
        "reduce_sketch": steps,
        "create_verification_wave": steps,
        "measure_wave_shard": steps * config["sketch"]["shards"],
        "certify_eigenpairs": steps,
        "exact_hessian": exact,
        "compute_overlap": steps + exact,
        "compare_to_exact": sets,
        "compute_stability": sets,
        "plot_overlap_over_training": 1,
        "plot_overlap_vs_k": 1,
        "plot_spectra": 1,
        "plot_training_curves": 1,
        "spectral_density": sets * len(config["plots"]["steps_vs_k"]),
        "plot_spectral_density": 1,
        "study_overview": 1,
    }
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--set-scatter", "measure=7", config=config))
    assert jobs["measure_sketch_shard"] == jobs["measure_wave_shard"] == 7 * steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sketch": {"k": 20, "wrong_key": 1}}, "wrong_key"),
        ({"sketch": {"k": 20, "s": 10}}, "sketch.s"),
        ({"training": {"lr": -1}}, "lr"),
        ({"sketch": {"k": 40.0}}, "sketch.k: 40.0 is a float"),
        ({"sketch": {"k": 1300, "s": 2600}}, "sketch.k: 1300 exceeds the model's D=1,210"),
    ],
)
def test_config_errors_name_the_key_before_any_job(
    tmp_path: Path, changes: dict, message: str
) -> None:
    config = json.loads(json.dumps(TINY))
    for section, values in changes.items():
        config[section] = values if section not in ("overlap",) else {**config[section], **values}
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_config_errors_that_need_the_data_or_the_command_line(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")  # 50 train and 20 test points per class
    config = with_changes(TINY, data={"root": str(data)}, hessian={"sets": {"test": 250}})
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert "hessian.sets.test: 250 points need 25 per class" in result.stdout + result.stderr
    result = snakemake(tmp_path, "-n", "--set-scatter", "measure=0", config=TINY)
    assert result.returncode != 0
    assert "at least one measurement shard" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_data_names_the_file(tmp_path: Path) -> None:
    """A configured data.root that is missing fails the dry run naming it and the files."""
    config = with_changes(TINY, data={"root": str(tmp_path / "no-data")})
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "data.root" in message and "no-data does not exist" in message, message[-3000:]
    assert "train-images-idx3-ubyte" in message
    # files that go missing after the dry run: the job that reads them names them
    data = write_fake_mnist(tmp_path / "data")
    config = with_changes(TINY, data={"root": str(data)})
    (data / "train-images-idx3-ubyte.gz").unlink()
    result = snakemake(tmp_path, RUN + "/train/trajectory.h5", config=config)
    assert result.returncode != 0
    log = (tmp_path / RUN / "logs" / "train_model.log").read_text()
    assert "train-images-idx3-ubyte" in log, log[-3000:]


def test_tiny_run_outputs(tiny_run: tuple[Path, dict]) -> None:
    workdir, config = tiny_run
    run = workdir / RUN
    for name in ("overlap_over_training", "overlap_vs_k", "spectra", "training_curves"):
        for ext in ("pdf", "png"):
            assert (run / "figures" / f"{name}.{ext}").stat().st_size > 1000
    # the summary's overlap equals a direct computation from the eigenpairs and the parameters
    k = config["overlap"]["report_k"]
    for hset, step in itertools.product(config["hessian"]["sets"], config["hessian"]["steps"]):
        here = run / f"hessian/set~{hset}/step~{step}/method~sketched"
        summary = json.loads((here / "summary.json").read_text())
        _, vectors, _ = read_eigenpairs(here / "eigenpairs.h5")
        mask = magnitude_order(Trajectory.open(run / "train/trajectory.h5").params(step))[:k]
        direct = float(vectors[mask, :k].square().sum() / k)
        assert summary["overlap"] == pytest.approx(direct, rel=1e-12)
        assert summary["chance"] == pytest.approx(k / vectors.shape[0], rel=1e-15)
        # every eigenvector file is orthonormal to float32 precision
        gram = vectors.T @ vectors
        torch.testing.assert_close(
            gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5, rtol=0
        )
    # train and test are different Hessians: their sets, eigenpairs and overlaps differ
    sets = [read_hessian_set(run / f"hessian/set~{h}/points.h5")[2] for h in ("train", "test")]
    assert [s["split"] for s in sets] == ["train", "test"] and [s["n"] for s in sets] == [50, 50]
    assert sets[0]["points_sha256"] != sets[1]["points_sha256"]
    for hset in config["hessian"]["sets"]:
        comparison = read_table(run / f"hessian/set~{hset}/comparison.tsv")
        assert list(comparison["step"]) == config["exact"]["steps"]
        # tiny net, k = 40 of D = 1,210: the median relative error of the top-10 eigenvalues
        # is below 2 % after training (decaying spectrum) and below 10 % at the flat random init
        errors = comparison["median_rel_error_top10"]
        assert errors[-1] < 0.02 and np.all(errors < 0.10), (hset, errors)
        # the exact overlap lies inside the sketched interval, at report_k and at every k
        assert np.all(comparison["exact_inside"] == 1) and np.all(comparison["k_outside"] == 0)
        assert np.all(comparison["k_compared"] == config["sketch"]["k"])
    report = json.loads(
        (run / "hessian/set~train/step~200/method~sketched/report.json").read_text()
    )
    assert report["hvps"] == config["sketch"]["s"] + config["sketch"]["probes"]
    assert len(report["shards"]) == config["sketch"]["shards"]
    # the certificate's residuals are the true ones: ‖Hw − λw‖ against the dense Hessian
    check_certificate_against_dense(run, config, step=200)
    check_certificate_against_dense(run, config, step=200, hset="test")


def check_certificate_against_dense(
    run: Path, config: dict, step: int, hset: str = "train"
) -> dict:
    """The certificate of ``step`` agrees with residuals computed from the dense Hessian."""
    base = run / f"hessian/set~{hset}/step~{step}/method~sketched"
    certificate = json.loads((base / "certificate.json").read_text())
    table = read_table(base / "certificate.tsv")
    values, vectors, _ = read_eigenpairs(base / "eigenpairs.h5")
    hessian = dense_hessian(run, step, hset, config["hessian"].get("curvature", "hessian"))
    residuals = (hessian @ vectors - vectors * values).norm(dim=0) / vectors.norm(dim=0)
    # float32 products: residuals agree to 1e-4 relative to ‖H‖₂
    norm = float(torch.linalg.eigvalsh(hessian).abs().max())
    assert np.abs(table["residual"] - residuals.numpy()).max() <= 1e-4 * norm
    # each certified eigenvalue is within its residual of a true eigenvalue
    true = torch.linalg.eigvalsh(hessian)
    for lam, res in zip(table["eigenvalue"], table["residual"], strict=True):
        assert float((true - lam).abs().min()) <= res + 1e-4 * norm
    trusted = certificate["trusted_k"]
    assert np.all(table["certified"][:trusted] == 1) and np.all(table["certified"][trusted:] == 0)
    # every space bound holds against the dense Hessian's eigenvectors (float64): the true
    # ‖sin Θ‖_F of the stored vectors' top-j span never exceeds it
    dense_values, dense_vectors = torch.linalg.eigh(hessian)
    exact = dense_vectors[:, torch.argsort(dense_values.abs(), descending=True)]
    q, _ = torch.linalg.qr(vectors)
    coefficients = exact.T @ q
    bounds = np.array([float(b) for b in certificate["space_bounds"]])
    for j in np.nonzero(np.isfinite(bounds))[0] + 1:
        assert float(coefficients[j:, :j].norm()) <= bounds[j - 1], j
    assert np.allclose(table["space_bound"], bounds, rtol=1e-9, atol=0)  # %.10g in the TSV
    summary = json.loads((base / "summary.json").read_text())
    assert summary["trusted_k"] == trusted and summary["space_k"] == certificate["space_k"]
    report_k = config["overlap"]["report_k"]
    overlap = read_table(base / "overlap.tsv")
    assert np.all(overlap["pairs_certified"] == (overlap["k"] <= trusted))
    certified = overlap["space_bound"] <= certificate["space_tolerance"]
    assert np.array_equal(overlap["certified"] == 1, certified)
    assert summary["certified"] == bool(certified[report_k - 1])
    # the interval contains the overlap of the exact top-k eigenspace at every k
    k = len(overlap["k"])
    mask = magnitude_order(Trajectory.open(run / "train/trajectory.h5").params(step))
    true = mask_overlap_curve(exact[mask[:k], :k], torch.arange(k)).numpy()
    assert np.all(overlap["overlap_low"] <= true + 1e-12)
    assert np.all(true <= overlap["overlap_high"] + 1e-12)
    # every mask of overlap.masks has its columns; the best k-subset bounds the others, and
    # its interval contains the exact best subset's overlap
    best = overlap["best_mask_overlap"]
    for name in config["overlap"].get("masks", ["random", "best", "gradient"]):
        column = f"{name.replace('-', '_')}_mask_overlap"
        assert np.all(overlap[f"{column}_low"] <= overlap[column] + 1e-12), name
        assert np.all(overlap[column] <= overlap[f"{column}_high"] + 1e-12), name
        assert np.all((0 <= overlap[column]) & (overlap[column] <= best + 1e-12)), name
    assert np.all(overlap["overlap"] <= best + 1e-12)
    exact_best = best_mask_curve(iter([exact[:, :k]]), k).numpy()
    assert np.all(overlap["best_mask_overlap_low"] <= exact_best + 1e-12)
    assert np.all(exact_best <= overlap["best_mask_overlap_high"] + 1e-12)
    return certificate


def test_later_stages_check_what_they_read(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Issue: stale or damaged eigenpairs, hand-edited summaries and tables passed unnoticed."""
    workdir, config = tiny_run
    run = workdir / RUN
    traj = run / "train" / "trajectory.h5"

    def files(step: int, method: str) -> dict[str, Path]:
        here = run / "hessian" / "set~train" / f"step~{step}" / f"method~{method}"
        return {"eigenpairs": here / "eigenpairs.h5", "summary": here / "summary.json"}

    exact_steps = config["exact"]["steps"]
    sketched = {t: files(t, "sketched") for t in exact_steps}
    exact = {t: files(t, "exact") for t in exact_steps}
    out = tmp_path / "comparison.tsv"

    def compare(changed: dict | None = None) -> None:
        compare_to_exact(
            sketched={**sketched, **(changed or {})},
            exact=exact,
            top=10,
            table_path=out,
            trajectory_path=traj,
        )

    compare()  # as the workflow wrote them: accepted
    # another step's eigenpair file copied in: refused by the comparison and the stability table
    stale = tmp_path / "stale.h5"
    shutil.copy2(sketched[200]["eigenpairs"], stale)
    with pytest.raises(IntegrityError, match=r"stale\.h5 was computed at parameters .* step 0"):
        compare({0: {**sketched[0], "eigenpairs": stale}})
    eigenpairs = {t: files(t, "sketched")["eigenpairs"] for t in config["hessian"]["steps"]}
    with pytest.raises(IntegrityError, match=r"stale\.h5 was computed at parameters"):
        compute_stability(
            eigenpairs={**eigenpairs, 0: stale},
            trajectory_path=traj,
            k=20,
            table_path=tmp_path / "stability.tsv",
        )
    # one bit flipped in the eigenvectors' data
    flipped = tmp_path / "flipped.h5"
    shutil.copy2(sketched[0]["eigenpairs"], flipped)
    with h5py.File(flipped, "r") as f:
        offset = f["eigenvectors"].id.get_chunk_info(0).byte_offset
    data = bytearray(flipped.read_bytes())
    data[offset + 100] ^= 0x10
    flipped.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"flipped\.h5 is missing or damaged"):
        compare({0: {**sketched[0], "eigenpairs": flipped}})
    # a hand-edited summary (overlap 0.5)
    edited = tmp_path / "method~sketched"
    shutil.copytree(sketched[0]["summary"].parent, edited)
    summary = json.loads((edited / "summary.json").read_text())
    (edited / "summary.json").write_text(json.dumps({**summary, "overlap": 0.5}))
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        compare({0: {**sketched[0], "summary": edited / "summary.json"}})
    # a hand-edited table beside its (intact) summary
    shutil.copy2(sketched[0]["summary"], edited / "summary.json")
    read_table(edited / "overlap.tsv")
    table = (edited / "overlap.tsv").read_text().splitlines()
    table[5] = table[5].replace("\t", "\t9", 1)
    (edited / "overlap.tsv").write_text("\n".join(table) + "\n")
    with pytest.raises(IntegrityError, match=r"overlap\.tsv does not match the SHA-256"):
        read_table(edited / "overlap.tsv")


def dense_hessian(
    run: Path, step: int, hset: str = "train", curvature: str = "hessian"
) -> torch.Tensor:
    points = str(run / f"hessian/set~{hset}/points.h5")
    spec = HessianSpec(points=points, batch_size=40, dtype="float64", curvature=curvature)
    op, _ = hessian_at_step(run / "train/trajectory.h5", step, spec, device=torch.device("cpu"))
    return dense_matrix(op)


def test_spectral_density_against_the_dense_hessian(tiny_run: tuple[Path, dict]) -> None:
    """The SLQ measure of every plotted Hessian: its extreme nodes on the dense Hessian's
    extreme eigenvalues, its Wasserstein-1 distance to the exact spectrum ≤ 5 % of the width
    (4 probes × 30 steps at D = 1,210), Hutch++ within 4 standard errors of the exact trace."""
    workdir, config = tiny_run
    run = workdir / RUN
    for hset in config["hessian"]["sets"]:
        for step in config["plots"]["steps_vs_k"]:
            record = read_json(run / f"hessian/set~{hset}/step~{step}/density.json", "density")
            values = torch.linalg.eigvalsh(dense_hessian(run, step, hset))
            density = SpectralDensity(
                torch.tensor(record["nodes"]), torch.tensor(record["weights"]), record["dim"]
            )
            atoms, mass = density.measure()
            width = float(values.max() - values.min())
            uniform = torch.full_like(values, 1 / values.numel())
            assert wasserstein_1(atoms, mass, values, uniform) <= 0.05 * width, (hset, step)
            assert abs(float(atoms.max()) - float(values.max())) <= 1e-3 * width
            error = abs(record["hutchpp_trace"] - float(values.sum()))
            assert error <= 4 * record["hutchpp_standard_error"], (hset, step)
            assert record["products"] >= 4 * 30 + 30
    assert (run / "figures/spectral_density.png").stat().st_size > 0


def test_rerun_behaviour(tiny_run: tuple[Path, dict]) -> None:
    workdir, config = tiny_run
    assert planned_jobs(snakemake(workdir, "-n", config=config)) == {}
    plots = {
        "plot_overlap_over_training": 1,
        "plot_overlap_vs_k": 1,
        "plot_spectra": 1,
        "plot_training_curves": 1,
        "plot_spectral_density": 1,
    }
    restyled = with_changes(config, plots={"style": {"dpi": 80}})
    assert planned_jobs(snakemake(workdir, "-n", config=restyled)) == plots
    sets = len(config["hessian"]["sets"])
    steps = sets * len(config["hessian"]["steps"])  # Hessians: every set at every step
    exact = sets * len(config["exact"]["steps"])
    new_k = with_changes(config, sketch={"k": 30, "s": 60}, overlap={"report_k": 20})
    assert planned_jobs(snakemake(workdir, "-n", config=new_k)) == {
        "create_sketch_store": steps,
        "measure_sketch_shard": steps * config["sketch"]["shards"],
        "reduce_sketch": steps,
        "create_verification_wave": steps,
        "measure_wave_shard": steps * config["sketch"]["shards"],
        "certify_eigenpairs": steps,
        "compute_overlap": steps,  # the exact ones are independent of the sketch
        "compare_to_exact": sets,
        "compute_stability": sets,
        **{rule: 1 for rule in plots if rule != "plot_training_curves"},
        "study_overview": 1,  # the summaries changed
    }
    # a stricter certificate re-checks the residuals; no product is measured again
    strict = with_changes(config, certificate={"tolerance": 0.01})
    assert planned_jobs(snakemake(workdir, "-n", config=strict)) == {
        "certify_eigenpairs": steps,
        "compute_overlap": steps,
        "compare_to_exact": sets,
        **{rule: 1 for rule in plots if rule != "plot_training_curves"},
        "study_overview": 1,  # the summaries changed
    }
    longer = with_changes(config, training={"steps": 300})
    jobs = planned_jobs(snakemake(workdir, "-n", config=longer))
    assert jobs["train_model"] == 1 and jobs["exact_hessian"] == exact
    assert jobs["measure_sketch_shard"] == steps * config["sketch"]["shards"]
    assert "extract_hessian_set" not in jobs  # the points do not depend on the training
    # a larger test set: only the test Hessians are measured again
    more_test = with_changes(config, hessian={"sets": {"train": 50, "test": 100}})
    jobs = planned_jobs(snakemake(workdir, "-n", config=more_test))
    assert jobs["extract_hessian_set"] == 1 and jobs["create_sketch_store"] == steps // sets
    assert jobs["exact_hessian"] == exact // sets and "train_model" not in jobs
    # the HVP mini-batch size is a machine setting: it reruns nothing
    rebatched = with_changes(config, hessian={"batch_size": 7})
    assert planned_jobs(snakemake(workdir, "-n", config=rebatched)) == {}
    # a missing intermediate is regenerated by a plain run, not hidden by the results after it
    step0 = workdir / RUN / "hessian" / "set~train" / "step~0"
    for lost, rule in [
        (step0 / "receipts" / "shard~2-of-2.json", "measure_sketch_shard"),
        (step0 / "method~sketched" / "eigenpairs.h5", "reduce_sketch"),
        (step0 / "method~exact" / "eigenpairs.h5", "exact_hessian"),
        (step0 / "sketch.zarr", "create_sketch_store"),
        (step0.parent / "points.h5", "extract_hessian_set"),
    ]:
        backup = workdir / "backup"
        shutil.move(lost, backup)
        jobs = planned_jobs(snakemake(workdir, "-n", config=config))
        assert jobs.get(rule) == 1, (lost, jobs)
        shutil.move(backup, lost)
    assert planned_jobs(snakemake(workdir, "-n", config=config)) == {}
    # data rewritten in place (same file names): everything it feeds is planned again
    data = Path(config["data"]["root"])
    times = {f: (f.stat().st_atime_ns, f.stat().st_mtime_ns) for f in data.iterdir()}
    write_fake_mnist(data, seed=1)
    jobs = planned_jobs(snakemake(workdir, "-n", config=config))
    assert jobs["train_model"] == 1 and jobs["create_sketch_store"] == steps
    assert jobs["extract_hessian_set"] == sets and jobs["exact_hessian"] == exact
    write_fake_mnist(data)  # the original bytes and times back
    for f, (atime, mtime) in times.items():
        os.utime(f, ns=(atime, mtime))
    # regenerate every figure and nothing else
    forced = snakemake(workdir, "figures", "--forcerun", *plots, config=config)
    assert planned_jobs(forced) == plots  # the job table of the real run
    assert planned_jobs(snakemake(workdir, "-n", config=config)) == {}


@pytest.fixture(scope="module")
def krylov_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny study at step 200 with adaptive block Krylov: waves of 20 HVPs, 3 shards each,
    until the top-10 space is certified (budget 200 HVPs)."""
    workdir = tmp_path_factory.mktemp("krylov")
    config = with_changes(
        TINY,
        data={"root": str(write_fake_mnist(workdir / "data"))},
        hessian={"steps": [200], "sets": {"train": 50}},
        sketch={"passes": "adaptive", "wave_width": 20, "shards": 3, "max_hvps": 200},
        certificate={"target": 10},
        exact={"steps": [200]},
        plots={"steps_vs_k": [200]},
    )
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config


def test_krylov_run_is_certified_and_matches_exact(krylov_run: tuple[Path, dict]) -> None:
    workdir, config = krylov_run
    run = workdir / RUN
    report = json.loads(
        (run / "hessian/set~train/step~200/method~sketched/report.json").read_text()
    )
    assert report["algorithm"] == "block-krylov"
    waves = len(report["wave_widths"])
    assert report["wave_widths"] == [20] * waves and report["hvps"] == 20 * waves
    # the certificate decided the number of waves: the last plan stopped at the target
    assert report["adaptive"]["stopped"] == "target met" and report["adaptive"]["target_met"]
    history = report["history"]
    assert len(history) == waves and history[-1]["reason"] == "target met"
    assert all(h["reason"] == "continue" for h in history[:-1])
    certificate = check_certificate_against_dense(run, config, step=200)
    assert certificate["space_k"] >= 10 and float(certificate["space_bounds"][9]) <= 0.1
    # the plan before the last did not meet the target: no wave was bought for nothing
    assert history[-2]["bound"] == "inf" or float(history[-2]["bound"]) > 0.1
    comparison = read_table(run / "hessian/set~train/comparison.tsv")
    assert comparison["overlap_abs_difference"][0] <= 0.005
    assert comparison["max_rel_error_top10"][0] <= 1e-4
    # a fixed number of passes instead: the rules know the waves without any checkpoint
    fixed = with_changes(
        config, sketch={"passes": 4, "max_hvps": None}, certificate={"target": None}
    )
    jobs = planned_jobs(snakemake(workdir, "-n", config=fixed))
    assert jobs["create_krylov_wave"] == 4 and jobs["plan_krylov_wave"] == 3
    assert jobs["measure_wave_shard"] == 4 * config["sketch"]["shards"]


@pytest.fixture(scope="module")
def ggn_run(krylov_run: tuple[Path, dict], tmp_path_factory) -> tuple[Path, dict]:
    """The adaptive Krylov study again with ``hessian.curvature: ggn``, in a copy of its
    workdir: the trained network and the Hessian set are kept, everything after them reruns."""
    workdir = tmp_path_factory.mktemp("ggn") / "work"
    shutil.copytree(krylov_run[0], workdir, symlinks=True)
    config = with_changes(krylov_run[1], hessian={"curvature": "ggn"})
    jobs = planned_jobs(snakemake(workdir, "-n", config=config))
    assert "train_model" not in jobs and "extract_hessian_set" not in jobs, jobs
    assert jobs["create_krylov_wave"] >= 1 and jobs["exact_hessian"] == 1, jobs
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config


def test_ggn_run_is_certified_and_matches_the_exact_ggn(ggn_run: tuple[Path, dict]) -> None:
    """A new curvature is a config value: the same rules sketch the GGN, certify it against
    the dense GGN and compare with its exact eigenpairs, to the Hessian's tolerances."""
    workdir, config = ggn_run
    run = workdir / RUN
    base = run / "hessian/set~train/step~200/method~sketched"
    report = json.loads((base / "report.json").read_text())
    assert report["adaptive"]["target_met"]
    certificate = check_certificate_against_dense(run, config, step=200)
    assert certificate["space_k"] >= 10
    comparison = read_table(run / "hessian/set~train/comparison.tsv")
    assert comparison["overlap_abs_difference"][0] <= 0.005
    assert comparison["max_rel_error_top10"][0] <= 1e-4
    # the exact reference is the GGN: positive semi-definite, unlike the Hessian
    exact, _, _ = read_eigenpairs(run / "hessian/set~train/step~200/method~exact/eigenpairs.h5")
    assert float(exact.min()) >= -1e-12 * float(exact.abs().max())
    ggn = dense_hessian(run, 200, curvature="ggn")
    hessian = dense_hessian(run, 200)
    assert float((ggn - hessian).norm()) > 1e-3 * float(hessian.norm())


def test_krylov_waves_do_not_depend_on_the_shard_count(
    krylov_run: tuple[Path, dict], tmp_path: Path
) -> None:
    workdir, config = krylov_run
    run = workdir / RUN
    one_shard = with_changes(config, sketch={"shards": 1})
    other = tmp_path / "one-shard"
    other.mkdir()
    target = RUN + "/hessian/set~train/step~200/method~sketched/eigenpairs.h5"
    result = snakemake(other, target, config=one_shard)
    assert result.returncode == 0, result.stderr[-5000:]
    waves = len(
        json.loads((run / "hessian/set~train/step~200/method~sketched/report.json").read_text())[
            "wave_widths"
        ]
    )
    assert (other / RUN / f"hessian/set~train/step~200/krylov/wave~{waves - 1}.zarr").is_dir()
    assert not (other / RUN / f"hessian/set~train/step~200/krylov/wave~{waves}.zarr").exists()
    for wave in range(waves):
        a = zarr.open_group(
            str(run / f"hessian/set~train/step~200/krylov/wave~{wave}.zarr"), mode="r"
        )
        b = zarr.open_group(
            str(other / RUN / f"hessian/set~train/step~200/krylov/wave~{wave}.zarr"), mode="r"
        )
        for name in ("V", "HV"):
            assert a[name][:].tobytes() == b[name][:].tobytes(), (wave, name)


def test_a_recreated_wave_makes_later_waves_stale(krylov_run: tuple[Path, dict]) -> None:
    from hessketch.errors import IntegrityError, SketchStoreError
    from hessketch.pipeline.krylov import plan_krylov_wave, reduce_krylov

    workdir, config = krylov_run
    step = workdir / RUN / "hessian/set~train/step~200"
    n = len(sorted((step / "krylov").glob("wave~*.zarr")))
    stores = [step / f"krylov/wave~{i}.zarr" for i in range(n)]
    receipts = [sorted((step / f"krylov/wave~{i}/receipts").glob("*.json")) for i in range(n)]
    plans = [step / f"krylov/plan~{i}.json" for i in range(1, n + 1)]
    wave1 = zarr.open_group(str(stores[1]), mode="r")
    chain = dict(wave1.attrs)["previous"]
    assert chain == [dict(zarr.open_group(str(stores[0]), mode="r").attrs)["store_id"]]
    # wave 1 built from another wave 0 (one re-created since) is refused, naming the wave
    tampered = step / "tampered"
    shutil.copytree(step / "krylov", tampered)
    group = zarr.open_group(str(tampered / "wave~1.zarr"), mode="r+")
    group.attrs["previous"] = ["0" * 32]
    reduction = {
        "receipt_paths": receipts,
        "k": 40,
        "tolerance": 0.05,
        "eigenpairs_path": tampered / "e.h5",
        "report_path": tampered / "r.json",
        "certificate_path": tampered / "c.json",
        "certificate_table_path": tampered / "c.tsv",
    }
    with pytest.raises(SketchStoreError, match=r"wave 1\).*stale"):
        reduce_krylov(store_paths=[tampered / f"wave~{i}.zarr" for i in range(n)], **reduction)
    # a plan's arrays edited, or a plan of other waves: refused, naming the plan
    shutil.rmtree(tampered)
    shutil.copytree(step / "krylov", tampered)
    arrays = tampered / "plan~1.npz"
    arrays.write_bytes(arrays.read_bytes()[:-8] + b"\0" * 8)
    copied = [tampered / p.name for p in plans]
    with pytest.raises(IntegrityError, match=r"plan~1\.npz does not match the SHA-256"):
        reduce_krylov(store_paths=stores, plan_paths=copied, **reduction)
    shutil.copy2(plans[0].with_suffix(".npz"), arrays)
    other = json.loads(plans[0].read_text())
    other["waves"] = ["0" * 32]
    from hessketch.store import write_json_atomic

    write_json_atomic(copied[0], {k: v for k, v in other.items() if k != "sha256"})
    with pytest.raises(SketchStoreError, match=r"plan~1\.json was computed from waves"):
        reduce_krylov(store_paths=stores, plan_paths=copied, **reduction)
    # replanning the last wave gives the same decision, bit for bit (with the job's one thread)
    again = tampered / f"again~{n}.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plan_krylov_wave(
        sketch={**config["sketch"], "s": 80},
        certificate=config["certificate"] | {"space_tolerance": 0.1, "product_error": None},
        wave=n,
        store_paths=stores,
        receipt_paths=receipts,
        plan_paths=plans[:-1],
        plan_path=again,
    )
    torch.set_num_threads(threads)
    assert (
        json.loads(again.read_text())["decision"] == json.loads(plans[-1].read_text())["decision"]
    )
    assert again.with_suffix(".npz").read_bytes() == plans[-1].with_suffix(".npz").read_bytes()
