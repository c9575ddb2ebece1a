"""Each paper experiment's config plans its full DAG with the paper's job counts, on tiny data
files in the real formats (CIFAR pickles, an ImageNet JPEG tree), and its model fits its data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_formats import write_pickle
from PIL import Image
from snakemake.utils import validate
from test_workflow import REPO, planned_jobs, snakemake

from hessketch.models import build_model, num_params
from hessketch.pipeline.common import DataSpec
from hessketch.pipeline.config import check_config

pytestmark = pytest.mark.workflow

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def write_cifar(root: Path, classes: int, n_train: int, n_test: int) -> Path:
    """Class-balanced CIFAR-10 (5 batches) or CIFAR-100 files with random pixels."""
    rng = np.random.default_rng(0)

    def batch(n: int, key: bytes, offset: int) -> dict:
        labels = [int(v) for v in (np.arange(n) + offset) % classes]
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return {key: labels, b"data": data, b"batch_label": b"fixture"}

    if classes == 10:
        folder = root / "cifar-10-batches-py"
        for i in range(1, 6):
            write_pickle(folder / f"data_batch_{i}", batch(n_train // 5, b"labels", i))
        write_pickle(folder / "test_batch", batch(n_test, b"labels", 0))
        names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
        write_pickle(folder / "batches.meta", names)
    else:
        folder = root / "cifar-100-python"
        write_pickle(folder / "train", batch(n_train, b"fine_labels", 0))
        write_pickle(folder / "test", batch(n_test, b"fine_labels", 0))
        names = {b"fine_label_names": [f"f{i}".encode() for i in range(100)]}
        write_pickle(folder / "meta", names)
    return root


def write_imagenet_tree(root: Path, classes: int, train: int, val: int) -> Path:
    """``train/`` and ``val/`` class folders of one small real JPEG each, repeated."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    for c in range(classes):
        wnid = f"n{c:08d}"
        for split, n in (("train", train), ("val", val)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{wnid}_{i}.JPEG").write_bytes(jpeg)
    return root


# config file → (the fixture that stands in for its data set, D, Hessians, shards per Hessian)
PAPER = {
    "cifar10-3c3d": (lambda r: write_cifar(r, 10, 2500, 500), 895_210, 2 * 5, 5),
    "cifar100-allcnnc": (lambda r: write_cifar(r, 100, 300, 1000), 1_387_108, 1 * 5, 6),
    "imagenet-resnet18": (lambda r: write_imagenet_tree(r, 1000, 1, 5), 11_689_512, 1 * 5, 30),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_a_paper_config_plans_the_papers_jobs(name: str, tmp_path: Path) -> None:
    write, dim, hessians, shards = PAPER[name]
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    config["data"]["root"] = str(write(tmp_path / "data"))
    with_defaults = yaml.safe_load(yaml.safe_dump(config))
    validate(with_defaults, str(REPO / "workflow/schemas/config.schema.yaml"))
    check_config(with_defaults, SCHEMA)  # the model fits the data's shape and classes
    data = DataSpec(**with_defaults["data"])
    assert {s: data.class_counts(s).min() for s in config["hessian"]["sets"]}  # sets can be drawn
    with torch.device("meta"):
        assert num_params(build_model(config["model"])) == dim
    sets = len(config["hessian"]["sets"])
    # the default study beside it, as in a checkout: --configfile replaces it, never merges
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config/config.yaml").read_text())
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config))
    assert jobs == {
        "train_model": 1,
        "extract_hessian_set": sets,
        "create_sketch_store": hessians,
        "measure_sketch_shard": hessians * shards,
        "reduce_sketch": hessians,
        "create_verification_wave": hessians,
        "measure_wave_shard": hessians * shards,
        "certify_eigenpairs": hessians,
        "compute_overlap": hessians,  # no exact reference at this size
        "compute_stability": sets,
        "plot_overlap_over_training": 1,
        "plot_overlap_vs_k": 1,
        "plot_spectra": 1,
        "plot_training_curves": 1,
        "study_overview": 1,
    }
