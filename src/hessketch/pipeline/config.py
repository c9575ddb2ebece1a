"""Checks of a study config that a JSON schema cannot express (relations between keys)."""

from __future__ import annotations

from typing import Any

from hessketch.errors import HessketchError
from hessketch.models import MODELS

__all__ = ["ConfigError", "check_config", "record_steps"]


class ConfigError(HessketchError):
    """The config is inconsistent; the message names the key."""


def record_steps(config: dict[str, Any]) -> list[int]:
    """Steps whose parameters are recorded: ``training.record_steps``, else the Hessian steps."""
    steps = config["training"].get("record_steps")
    return sorted(set(steps if steps is not None else config["hessian"]["steps"]))


def check_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first offending key of a schema-valid config."""
    train, hess, sketch = config["training"], config["hessian"], config["sketch"]
    exact, overlap, plots = config["exact"], config["overlap"], config["plots"]
    k = sketch["k"]
    s = sketch["s"] if sketch["s"] is not None else 2 * k
    problems = []
    if config["model"]["name"] not in MODELS:
        problems.append(f"model.name: {config['model']['name']!r} is not one of {sorted(MODELS)}")
    if s < k:
        problems.append(f"sketch.s: must be >= sketch.k={k}, got {s}")
    if sum(hess["set"].values()) == 0:
        problems.append("hessian.set: the Hessian set is empty (give train and/or test counts)")
    for split, n in hess["set"].items():
        if n % 10:
            problems.append(f"hessian.set.{split}: {n} is not divisible by the 10 classes")
    late = [t for t in record_steps(config) if t > train["steps"]]
    if late:
        problems.append(
            f"training.record_steps / hessian.steps: steps {late} exceed "
            f"training.steps={train['steps']}"
        )
    missing = sorted(set(hess["steps"]) - set(record_steps(config)))
    if missing:
        problems.append(f"hessian.steps: steps {missing} are not in training.record_steps")
    not_hessian = sorted(set(exact["steps"]) - set(hess["steps"]))
    if not_hessian:
        problems.append(f"exact.steps: steps {not_hessian} are not in hessian.steps")
    passes, width = sketch.get("passes", 1), sketch.get("wave_width")
    if width is not None and width > s:
        problems.append(f"sketch.wave_width: {width} exceeds sketch.s={s}")
    if passes > 1 and passes * (width or s) < k:
        problems.append(
            f"sketch.passes: {passes} waves of {width or s} HVPs span fewer than sketch.k={k} "
            "directions"
        )
    pairs = config.get("certificate", {}).get("pairs")
    if pairs is not None and pairs > k:
        problems.append(f"certificate.pairs: {pairs} exceeds sketch.k={k}")
    if overlap["report_k"] > k:
        problems.append(f"overlap.report_k: {overlap['report_k']} exceeds sketch.k={k}")
    if exact["steps"] and overlap["report_k"] > exact["k"]:
        problems.append(f"overlap.report_k: {overlap['report_k']} exceeds exact.k={exact['k']}")
    not_plotted = sorted(set(plots["steps_vs_k"]) - set(hess["steps"]))
    if not_plotted:
        problems.append(f"plots.steps_vs_k: steps {not_plotted} are not in hessian.steps")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
