"""Network architectures by name, and flat views of their parameters.

A model is described by a small JSON-able *spec* (``{"name": "mlp16", ...}``) that is stored
next to every parameter trajectory, so a Hessian can be rebuilt from the file alone.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "MODELS",
    "build_model",
    "flatten_params",
    "model_problems",
    "num_params",
    "register_model",
    "unflatten_params",
]

ModelFactory = Callable[..., nn.Module]
MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory under ``name`` (a decorator)."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = factory
        return factory

    return decorate


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build the model described by ``spec`` (``{"name": ..., **kwargs}``), in float32, on the CPU.

    Raises:
        ValueError: if the name is not registered; the message lists the registered names.
    """
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def model_problems(spec: dict[str, Any]) -> list[str]:
    """Problems of the model spec ``spec`` (``{"name": ..., **kwargs}``), without building it.

    The keywords are checked against the signature of the registered factory, so every model's
    hyper-parameters are validated without a schema entry per model.

    Args:
        spec: The model spec, as in a config or a trajectory's metadata.

    Returns:
        Human-readable problems, each starting with ``model.<key>:`` (or ``model.name:``): an
        unregistered name, a keyword the factory does not accept, a missing required keyword.
        Empty if the spec is fine.
    """
    if not isinstance(spec, dict):
        return [f"model: expected a mapping with a 'name', got {spec!r}"]
    kwargs = dict(spec)
    if "name" not in kwargs:
        return [f"model.name: missing; registered models: {sorted(MODELS)}"]
    name = kwargs.pop("name")
    if not isinstance(name, str) or name not in MODELS:
        return [f"model.name: {name!r} is not a registered model; registered: {sorted(MODELS)}"]
    sig = inspect.signature(MODELS[name])
    params = sig.parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [p for p in params if params[p].kind in kinds]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    problems = []
    if not open_ended:
        problems += [
            f"model.{key}: not a keyword of model {name!r}; it accepts {accepted or 'none'}"
            for key in kwargs
            if key not in accepted
        ]
    problems += [
        f"model.{key}: required by model {name!r} but missing"
        for key in accepted
        if params[key].default is inspect.Parameter.empty and key not in kwargs
    ]
    if not problems:
        try:
            sig.bind(**kwargs)
        except TypeError as err:
            problems.append(f"model.name: {name!r} cannot take {sorted(kwargs)}: {err}")
    return problems


@register_model("mlp")
def mlp(
    widths: tuple[int, ...] | list[int] = (256, 20, 20, 20, 20, 20, 10),
    activation: str = "tanh",
) -> nn.Module:
    """A fully connected network ``widths[0] → … → widths[-1]``, activations in between.

    Inputs are flattened first, so image batches ``(N, C, H, W)`` with ``C·H·W = widths[0]`` are
    accepted as well as flat rows ``(N, widths[0])``.

    Args:
        widths: Layer widths, input first, ``num_classes`` last (at least 2).
        activation: ``"tanh"``, ``"relu"`` or ``"sigmoid"``, after every layer but the last.

    Returns:
        An ``nn.Sequential``: ``Flatten``, then ``Linear`` and activation layers.

    Raises:
        ValueError: for an unknown activation or fewer than 2 widths.
    """
    acts: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(acts)}")
    if len(widths) < 2:
        raise ValueError(f"an MLP needs at least 2 widths, got {list(widths)}")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(acts[activation]())
    return nn.Sequential(*layers)


@register_model("mlp16")
def mlp16() -> nn.Module:
    """The paper's 16×16 MNIST network: 256→20→20→20→20→20→10 with tanh, 7,030 parameters.

    Inputs are ``(N, 1, 16, 16)`` images or flat rows ``(N, 256)``.
    """
    return mlp((256, 20, 20, 20, 20, 20, 10), "tanh")


@register_model("cnn3c3d")
def cnn3c3d(num_classes: int = 10) -> nn.Module:
    """DeepOBS ``cifar10_3c3d``: three conv and three dense layers, 895,210 parameters.

    conv 5×5×64 (valid), conv 3×3×96 (valid), conv 3×3×128 (same), each ReLU and 3×3 max pooling
    with stride 2 (padding 1, the output sizes of TensorFlow's "same"), then dense 512, 256 (ReLU)
    and ``num_classes``. Inputs are image batches ``(N, 3, 32, 32)``.

    Args:
        num_classes: Number of outputs (logits).

    Returns:
        An ``nn.Sequential`` of the layers above.
    """
    pool = {"kernel_size": 3, "stride": 2, "padding": 1}
    return nn.Sequential(
        nn.Conv2d(3, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(**pool),
        nn.Conv2d(64, 96, 3),
        nn.ReLU(),
        nn.MaxPool2d(**pool),
        nn.Conv2d(96, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(**pool),
        nn.Flatten(),
        nn.Linear(3 * 3 * 128, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


@register_model("cnn2c2d")
def cnn2c2d(num_classes: int = 10) -> nn.Module:
    """DeepOBS ``mnist_2c2d`` / ``fmnist_2c2d``: two conv, two dense layers, 3,274,634 parameters.

    conv 5×5×32 and conv 5×5×64 (both "same"), each ReLU and 2×2 max pooling with stride 2, then
    dense 1024 (ReLU) and ``num_classes``. Inputs are image batches ``(N, 1, 28, 28)``.

    Args:
        num_classes: Number of outputs (logits).

    Returns:
        An ``nn.Sequential`` of the layers above.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024),
        nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


@register_model("allcnnc")
def allcnnc(num_classes: int = 100) -> nn.Module:
    """DeepOBS ``cifar100_allcnnc``, All-CNN-C of Springenberg et al. (2015): 1,387,108 parameters.

    Dropout 0.2 on the input; conv 3×3×96 twice ("same") and once with stride 2 (padding 1);
    dropout 0.5; conv 3×3×192 twice ("same") and once with stride 2 (padding 1); dropout 0.5;
    conv 3×3×192 ("valid"), conv 1×1×192, conv 1×1×``num_classes``; global average pooling. ReLU
    after every conv but the last. Inputs are image batches ``(N, 3, 32, 32)``. The dropout layers
    make training-mode outputs random; call ``.eval()`` for a deterministic network.

    Args:
        num_classes: Number of outputs (logits).

    Returns:
        An ``nn.Sequential`` of the layers above.
    """

    def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 1) -> list:
        return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), nn.ReLU()]

    return nn.Sequential(
        nn.Dropout(0.2),
        *conv(3, 96, 3),
        *conv(96, 96, 3),
        *conv(96, 96, 3, stride=2),
        nn.Dropout(0.5),
        *conv(96, 192, 3),
        *conv(192, 192, 3),
        *conv(192, 192, 3, stride=2),
        nn.Dropout(0.5),
        *conv(192, 192, 3, padding=0),
        *conv(192, 192, 1, padding=0),
        nn.Conv2d(192, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv + BN, a residual connection, ReLU (as torchvision)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()  # not in place (torchvision: in place), safer under torch.func
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks, same module names (and so ``state_dict`` keys)."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()  # not in place (torchvision: in place), safer under torch.func
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        c_in = 64
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [
                BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1)
                for j in range(n)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialization (without zero_init_residual)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the image batch ``x`` ``(N, 3, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18")
def resnet18(num_classes: int = 1000) -> nn.Module:
    """ResNet-18 (He et al. 2016) as torchvision builds it: 11,689,512 parameters.

    conv 7×7×64 stride 2 (no bias), BN, ReLU, 3×3 max pooling stride 2; four stages of two
    basic blocks (64, 128, 256, 512 channels; the first block of stages 2–4 has stride 2 and a
    1×1 conv + BN shortcut); adaptive average pooling; dense ``num_classes``. Module names,
    hence ``named_parameters()`` order and ``state_dict`` keys, are torchvision's, and so is the
    initialization (without ``zero_init_residual``). Inputs are image batches ``(N, 3, H, W)``,
    224×224 in ImageNet; any size of at least 32 works. The 20 BatchNorm layers hold buffers
    (running statistics) and normalize by batch statistics in training mode, so call
    ``.eval()`` for outputs that do not depend on the rest of the batch.

    Args:
        num_classes: Number of outputs (logits).

    Returns:
        A ``ResNet`` module.
    """
    return ResNet((2, 2, 2, 2), num_classes)


def num_params(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def flatten_params(model: nn.Module) -> torch.Tensor:
    """The parameters of ``model`` as one detached vector, in ``model.parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten_params(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split ``flat`` into tensors shaped like ``model``'s parameters, keyed by parameter name.

    The result is a view of ``flat`` (differentiable with respect to it), suitable for
    ``torch.func.functional_call``.
    """
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    if flat.ndim != 1 or flat.numel() != total:
        raise ValueError(
            f"expected a flat vector of {total} parameters, got shape {tuple(flat.shape)}"
        )
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, p in named:
        out[name] = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def load_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy ``flat`` into ``model``'s parameters in place."""
    with torch.no_grad():
        for p, v in zip(model.parameters(), unflatten_params(model, flat).values(), strict=True):
            p.copy_(v)
