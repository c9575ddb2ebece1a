"""The model registry: the paper's networks, their parameter counts and ``model_problems``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hessketch.models import MODELS, build_model, model_problems, num_params

# name: (spec, input shape of one example, number of classes, parameter count)
PAPER_MODELS = {
    "mlp16": ({"name": "mlp16"}, (1, 16, 16), 10, 7_030),
    "cnn3c3d": ({"name": "cnn3c3d"}, (3, 32, 32), 10, 895_210),
    "cnn2c2d": ({"name": "cnn2c2d"}, (1, 28, 28), 10, 3_274_634),
    "allcnnc": ({"name": "allcnnc"}, (3, 32, 32), 100, 1_387_108),
    "resnet18": ({"name": "resnet18"}, (3, 224, 224), 1000, 11_689_512),
}


def test_every_paper_model_is_registered() -> None:
    assert set(PAPER_MODELS) <= set(MODELS)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_parameter_count(name: str) -> None:
    spec, _, _, count = PAPER_MODELS[name]
    with torch.device("meta"):
        model = build_model(spec)
    assert num_params(model) == count


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_forward_gives_finite_logits_and_eval_is_deterministic(name: str) -> None:
    spec, shape, classes, _ = PAPER_MODELS[name]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert first.shape == (2, classes) and first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)


def test_allcnnc_dropout_is_random_in_training_mode_only() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "allcnnc", "num_classes": 10})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
        assert model(x).shape == (2, 10)


def test_mlp16_accepts_images_and_flat_rows() -> None:
    model = build_model({"name": "mlp16"})
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.reshape(3, 256)))
    assert model(x).shape == (3, 10)


def test_resnet18_matches_torchvision_names_and_has_batchnorm_buffers() -> None:
    with torch.device("meta"):
        model = build_model({"name": "resnet18"})
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20
    assert len(list(model.buffers())) == 3 * len(bns) == 60
    names = [name for name, _ in model.named_parameters()]
    assert names[:4] == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight"]
    assert "layer2.0.downsample.0.weight" in names and "layer2.0.downsample.1.bias" in names
    assert "layer1.0.downsample.0.weight" not in names
    assert names[-2:] == ["fc.weight", "fc.bias"]
    keys = list(model.state_dict())
    assert keys[1:6] == [
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]


def test_resnet18_initialization_is_torchvisions() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "resnet18", "num_classes": 10})
    assert torch.equal(model.bn1.weight, torch.ones(64))
    assert torch.equal(model.layer3[1].bn2.bias, torch.zeros(256))
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (64 * 7 * 7))
    std = model.conv1.weight.std().item()
    assert abs(std - (2 / (64 * 49)) ** 0.5) < 0.1 * std


def test_model_problems() -> None:
    unknown = model_problems({"name": "nope"})
    assert len(unknown) == 1 and unknown[0].startswith("model.name:") and "cnn2c2d" in unknown[0]
    keyword = model_problems({"name": "cnn2c2d", "widths": [3]})
    assert len(keyword) == 1 and keyword[0].startswith("model.widths:")
    assert "num_classes" in keyword[0]
    assert model_problems({"name": "allcnnc", "num_classes": 10}) == []
    assert model_problems({"name": "mlp16"}) == []
    assert model_problems({"name": "mlp", "widths": [4, 2], "activation": "relu"}) == []
    assert model_problems({})[0].startswith("model.name:")


def test_model_problems_reports_a_missing_required_keyword() -> None:
    def needs_width(width: int, depth: int = 2) -> nn.Module:
        return nn.Linear(width, depth)

    MODELS["_test_needs_width"] = needs_width
    try:
        problems = model_problems({"name": "_test_needs_width"})
        assert len(problems) == 1 and problems[0].startswith("model.width:")
        assert model_problems({"name": "_test_needs_width", "width": 3}) == []
    finally:
        del MODELS["_test_needs_width"]
