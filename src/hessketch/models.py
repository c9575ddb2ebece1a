"""Network architectures by name, and flat views of their parameters.

A model is described by a small JSON-able *spec* (``{"name": "mlp16", ...}``) that is stored
next to every parameter trajectory, so a Hessian can be rebuilt from the file alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "MODELS",
    "build_model",
    "flatten_params",
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


@register_model("mlp")
def mlp(
    widths: tuple[int, ...] | list[int] = (256, 20, 20, 20, 20, 20, 10),
    activation: str = "tanh",
) -> nn.Module:
    """A fully connected network ``widths[0] → … → widths[-1]``, activations in between."""
    acts: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(acts)}")
    if len(widths) < 2:
        raise ValueError(f"an MLP needs at least 2 widths, got {list(widths)}")
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(acts[activation]())
    return nn.Sequential(*layers)


@register_model("mlp16")
def mlp16() -> nn.Module:
    """The paper's 16×16 MNIST network: 256→20→20→20→20→20→10 with tanh, 7,030 parameters."""
    return mlp((256, 20, 20, 20, 20, 20, 10), "tanh")


@register_model("cnn3c3d")
def cnn3c3d(num_classes: int = 10) -> nn.Module:
    """DeepOBS ``cifar10_3c3d``: three conv and three dense layers, 895,210 parameters.

    conv 5×5×64 (valid), conv 3×3×96 (valid), conv 3×3×128 (same), each ReLU and 3×3 max pooling
    with stride 2 (padding 1, the output sizes of TensorFlow's "same"), then dense 512, 256 (ReLU)
    and ``num_classes``. Inputs are 3×32×32 images (flat rows of 3,072 are reshaped).
    """
    pool = {"kernel_size": 3, "stride": 2, "padding": 1}
    return nn.Sequential(
        _Images((3, 32, 32)),
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


class _Images(nn.Module):
    """Reshape flat rows to images of ``shape``; image batches pass through."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


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
