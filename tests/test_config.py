"""Config relations checked before any job runs, each error naming its key (no Snakemake run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from idx_files import write_fake_mnist
from snakemake.utils import validate

from hessketch.pipeline.config import ConfigError, check_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())


def checked(changes: dict, root: Path | None = None) -> None:
    """Validate TINY with ``changes`` (sections replaced) against the schema, then check it."""
    config = json.loads(json.dumps(TINY))
    config.update(json.loads(json.dumps(changes)))
    if root is not None:
        config["data"]["root"] = str(root)
    validate(config, str(SCHEMA))  # fills the defaults, as the workflow does
    check_config(config, yaml.safe_load(SCHEMA.read_text()))


def test_the_tiny_and_default_configs_pass(tmp_path: Path) -> None:
    checked({}, write_fake_mnist(tmp_path))
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(default, str(SCHEMA))
    check_config(default, yaml.safe_load(SCHEMA.read_text()))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hessian": {"steps": [0, 999], "sets": {"train": 50}}}, "training.steps"),
        ({"overlap": {"report_k": 999}}, "overlap.report_k: 999 exceeds sketch.k=40"),
        ({"hessian": {"steps": [0, 100, 200], "sets": {"val": 50}}}, "hessian.sets.val: mnist"),
        ({"data": {"dataset": "svhn"}}, "data.dataset: 'svhn' is not a registered data set"),
        ({"model": {"name": "mlp", "width": [64, 10]}}, "model.width"),
        ({"model": {"name": "resnet50"}}, "model.name"),
        ({"sketch": {"k": 40, "passes": 2, "wave_width": 10}}, "sketch.passes"),
        ({"sketch": {"k": 40, "wave_width": 100}}, "sketch.wave_width"),
        ({"sketch": {"k": 40}, "certificate": {"pairs": 41}}, "certificate.pairs"),
        ({"sketch": {"k": 40.0}}, "sketch.k: 40.0 is a float; write the integer 40"),
        ({"training": {"steps": 200.0}}, "training.steps: 200.0 is a float"),
        ({"hessian": {"steps": [0, 100.0], "sets": {"train": 50}}}, r"hessian.steps\[1\]: 100.0"),
        ({"hessian": {"steps": [0], "sets": {"train": 50.0}}}, "hessian.sets.train: 50.0"),
        ({"sketch": {"k": 1300, "s": 2600}}, "sketch.k: 1300 exceeds the model's D=1,210"),
        ({"sketch": {"k": 40, "s": 1211}}, "sketch.s: 1211 exceeds the model's D=1,210"),
        (
            {"sketch": {"k": 40, "s": 200, "passes": 13, "wave_width": 100}},
            "sketch.passes: 13 waves of 100 HVPs span 1300 directions",
        ),
        ({"sketch": {"k": 40, "passes": "adaptive"}}, "sketch.max_hvps: an adaptive run"),
        ({"sketch": {"k": 40, "passes": "adaptive", "max_hvps": 30}}, "sketch.max_hvps: 30 HVPs"),
        (
            {"sketch": {"k": 40, "passes": "adaptive", "max_hvps": 2000}},
            "sketch.max_hvps: 2000 HVPs span more directions than the model's D=1,210",
        ),
        (
            {
                "sketch": {"k": 40, "passes": "adaptive", "max_hvps": 400},
                "certificate": {"target": 41},
            },
            "certificate.target: 41 exceeds sketch.k=40",
        ),
        ({"sketch": {"k": 40, "max_hvps": 400}}, "sketch.max_hvps: only an adaptive run"),
        (
            {"sketch": {"k": 40}, "certificate": {"target": 10}},
            "certificate.target: only an adaptive",
        ),
        ({"exact": {"steps": [0], "k": 2000}}, "exact.k: 2000 exceeds the model's D=1,210"),
        ({"exact": {"steps": [0], "k": 40, "max_dim": 1000}}, "exceeds exact.max_dim=1,000"),
        ({"model": {"name": "mlp", "widths": [100, 16, 10]}}, "does not accept this data"),
        ({"data": {"dataset": "mnist", "image_size": 10}}, r"shape \(1, 10, 10\)"),
        ({"model": {"name": "cnn3c3d"}}, "does not accept this data"),
        # without the data files, the class count the format fixes still checks the config
        ({"hessian": {"steps": [0, 100, 200], "sets": {"train": 55}}}, "hessian.sets.train: 55"),
        ({"model": {"name": "mlp", "widths": [64, 16, 7]}}, "has 10 classes"),
        (
            {"data": {"dataset": "cifar100", "root": "/nonexistent"}, "model": {"name": "cnn3c3d"}},
            "has 100 classes",
        ),
    ],
)
def test_relations_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        checked(changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hessian": {"steps": [0, 100, 200], "sets": {"train": 55}}}, "hessian.sets.train: 55"),
        ({"model": {"name": "mlp", "widths": [64, 16, 7]}}, "has 10 classes"),
        ({"hessian": {"steps": [0, 100, 200], "sets": {"train": 600}}}, "sets.train: 600 points"),
        ({"hessian": {"steps": [0, 100, 200], "sets": {"test": 250}}}, "only 20 of class 0"),
        ({"training": {"batch_size": 501}}, "training.batch_size: 501 exceeds the 500 points"),
    ],
)
def test_class_counts_come_from_the_label_files(
    tmp_path: Path, changes: dict, message: str
) -> None:
    root = write_fake_mnist(tmp_path)  # 50 train and 20 test points per class
    with pytest.raises(ConfigError, match=message):
        checked(changes, root)
