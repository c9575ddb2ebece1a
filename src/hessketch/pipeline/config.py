"""Checks of a study config that a JSON schema cannot express (relations between keys)."""

from __future__ import annotations

import contextlib
import urllib.parse
from pathlib import Path
from typing import Any

import torch

from hessketch import sources
from hessketch.curvature import curvature_problems
from hessketch.data import DATASETS, ImageFolderDataset
from hessketch.errors import DataError, HessketchError
from hessketch.masks import mask_problems
from hessketch.models import build_model, model_problems
from hessketch.pipeline.common import DataSpec

__all__ = ["ConfigError", "check_config", "data_source_problems", "record_steps"]


class ConfigError(HessketchError):
    """The config is inconsistent; the message names the key."""


def record_steps(config: dict[str, Any]) -> list[int]:
    """Steps whose parameters are recorded: ``training.record_steps``, else the Hessian steps."""
    steps = config["training"].get("record_steps")
    return sorted(set(steps if steps is not None else config["hessian"]["steps"]))


def _float_integers(value: Any, schema: dict[str, Any], key: str) -> list[str]:
    """Keys whose schema type is integer but whose value is a float.

    JSON Schema 2020-12 lets ``40.0`` pass as an integer; Python code downstream would not.
    """
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, float) and "integer" in types and "number" not in types:
        return [f"{key}: {value!r} is a float; write the integer {value:.0f}"]
    found = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = properties.get(name, extra if isinstance(extra, dict) else {})
            found += _float_integers(item, sub, f"{key}.{name}" if key else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += _float_integers(item, schema["items"], f"{key}[{i}]")
    return found


def _model_problems(config: dict[str, Any], data: DataSpec) -> tuple[int | None, list[str]]:
    """``D`` of the configured model and what does not fit the data, from the model spec alone.

    The model is built on the meta device (no memory, no parameters drawn) and run on a batch
    of the data's input shape; its outputs are checked against the data's class count when the
    data are there to count them.
    """
    try:
        with torch.device("meta"):
            model = build_model(config["model"])
    except (TypeError, ValueError) as err:
        return None, [f"model: {config['model']} cannot be built: {err}"]
    dim = sum(p.numel() for p in model.parameters())
    try:
        shape = data.input_shape()
    except (ValueError, DataError) as err:
        return dim, [f"data.image_size: {err}"]
    try:
        with torch.no_grad():
            out = model.eval()(torch.empty(2, *shape, device="meta"))
    except RuntimeError as err:
        return dim, [
            f"model: {config['model']} does not accept this data's inputs of shape {shape} "
            f"(data.dataset={data.dataset!r}, data.image_size={data.image_size}): {err}"
        ]
    classes = _classes(data)
    if classes is not None and tuple(out.shape) != (2, classes):
        return dim, [
            f"model: {config['model']} gives outputs of shape {tuple(out.shape[1:])}, but "
            f"data.dataset={data.dataset!r} has {classes} classes (set model.num_classes)"
        ]
    return dim, []


def _classes(data: DataSpec) -> int | None:
    """The class count from the data, else the one the format fixes (None: unknown yet)."""
    try:
        return data.num_classes()
    except DataError:
        return data.reader.format_classes


def _data_problems(config: dict[str, Any], data: DataSpec) -> list[str]:
    """Hessian sets and mini-batch against the class counts of the labels, if present.

    A configured ``data.root`` that holds none of the data set's files is a problem here, and
    so is an ImageNet tree that is not laid out as the reader expects; data missing from the
    default location is :func:`data_source_problems`' (the workflow checks both before any job).
    """
    problems: list[str] = []
    if data.root is not None and not data.files():
        where = "does not exist" if not Path(data.root).exists() else "holds none of its files"
        return [
            f"data.root: {data.root} {where} (data set {data.dataset!r}): "
            f"{data.reader.expected(Path(data.root))}, or point data.root at the folder "
            f"that has them{_retrieval_hint(data.dataset)}"
        ]
    if isinstance(data.reader, ImageFolderDataset) and data.files():
        try:
            sources.check_imagenet_layout(data.resolved_root(), data.dataset)
        except DataError as err:
            return [f"data.root: {err}"]
    classes = _classes(data)
    if classes is None:
        return problems  # no data yet: the job that reads them names the missing files
    for split, n in config["hessian"]["sets"].items():
        if n % classes:
            problems.append(
                f"hessian.sets.{split}: {n} is not divisible by the {classes} classes of "
                f"data.dataset={data.dataset!r} (each set is class-balanced)"
            )
            continue
        try:
            counts = data.class_counts(split)
        except DataError:
            continue
        short = [c for c in range(classes) if counts[c] < n // classes]
        if short:
            problems.append(
                f"hessian.sets.{split}: {n} points need {n // classes} per class, but "
                f"the {split} split under {data.resolved_root()} has only "
                f"{int(counts[short].min())} of class {short[int(counts[short].argmin())]}"
            )
    try:
        train_size = int(data.class_counts("train").sum())
    except DataError:
        return problems
    if config["training"]["batch_size"] > train_size:
        problems.append(
            f"training.batch_size: {config['training']['batch_size']} exceeds the "
            f"{train_size} points of the train split under {data.resolved_root()}"
        )
    return problems


def _retrieval_hint(dataset: str) -> str:
    """How the data set can be fetched instead (``data.url``), or where to obtain it."""
    source = sources.SOURCES.get(dataset)
    if source is None:
        return ""
    if not source.downloadable:
        return f"; {source.obtain}" if source.obtain else ""
    root = sources.resource_root(dataset)
    return (
        f"; or set data.root: null and data.url: {sources.PUBLISHED} to fetch the published "
        f"files ({', '.join(source.names())}, each verified by its published MD5) into "
        f"{root}/, or data.url: <mirror> (a base URL or a local folder holding those files) "
        "where this machine has no internet"
    )


def _source_problems(data: dict[str, Any]) -> list[str]:
    """``data.url`` against ``data.root`` and the data set's source (only when it is set)."""
    url = data.get("url")
    if url is None:
        return []
    name = data["dataset"]
    source = sources.SOURCES.get(name)
    if source is None or not source.downloadable:
        how = f": {source.obtain}" if source is not None and source.obtain else ""
        return [
            f"data.url: data set {name!r} has no download{how}; set data.url: null and "
            f"data.root to the folder that holds it ({_expected(name)})"
        ]
    root = sources.resource_root(name)
    if data.get("root") is not None:
        return [
            f"data.url / data.root: both are set ({url!r}, {data['root']!r}); data.url fetches "
            f"the data into {root}/, which is then the root: set data.root: null to fetch, or "
            "data.url: null to read the files in data.root"
        ]
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme and scheme not in ("http", "https", "file") and len(scheme) > 1:
        return [
            f"data.url: {url!r} has the scheme {scheme}://, which cannot be fetched; use "
            f"{sources.PUBLISHED!r}, an http://, https:// or file:// base URL, or a local folder"
        ]
    lacking = sources.check_mirror(name, url, root)
    if lacking:
        return [
            f"data.url: the mirror {url} lacks {', '.join(lacking)} (data set {name!r}), and "
            f"{root}/ does not hold them yet: place the published files under those names in "
            f"{url}, or set data.url: {sources.PUBLISHED}"
        ]
    return []


def _expected(dataset: str) -> str:
    """The reader's sentence on which files go where, under a placeholder root."""
    return DATASETS[dataset].expected(Path("<data.root>"))


def data_source_problems(config: dict[str, Any]) -> list[str]:
    """The problem of a study without data: no data.url, no data.root, nothing by default.

    That is: the data set has no default location, or it holds none of its files. The problem
    names the exact files and where to place them, and how to fetch them (``data.url``). The
    workflow checks this before any job runs, right after :func:`check_config` (which checks a
    configured ``data.root``).
    """
    data = config["data"]
    if data.get("url") is not None or data.get("root") is not None:
        return []
    name = data["dataset"]
    reader = DATASETS[name]
    if reader.default_root is None:
        return [
            f"data.root: null, and data set {name!r} has no default location, so there are no "
            f"data: set data.root to a folder and there {reader.expected(Path('<data.root>'))}"
            f"{_retrieval_hint(name)}"
        ]
    if DataSpec(**data).files():
        return []
    where = "does not exist" if not reader.default_root.exists() else "holds none of its files"
    return [
        f"data.root: null, and the default location {reader.default_root} of data set "
        f"{name!r} {where}: {reader.expected(reader.default_root)}; or set data.root to a folder "
        f"that holds them{_retrieval_hint(name)}"
    ]


def check_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> None:
    """Raise :class:`ConfigError` naming every offending key of a schema-valid config.

    Checks the relations between keys, integers written as floats (given the ``schema``), and
    everything that the model spec and the data's labels decide before any job runs: the
    model's hyper-parameters against its registered function, ``D`` against ``k``, ``s`` and
    the exact reference, the model against the data's input shape and classes, each Hessian set
    against its split's class counts.
    """
    if schema is not None:
        floats = _float_integers(config, schema, "")
        if floats:
            raise ConfigError("invalid config:\n  " + "\n  ".join(floats))
    train, hess, sketch = config["training"], config["hessian"], config["sketch"]
    exact, overlap, plots = config["exact"], config["overlap"], config["plots"]
    k = sketch["k"]
    s = sketch["s"] if sketch["s"] is not None else 2 * k
    problems = model_problems(config["model"])
    if config["data"]["dataset"] not in DATASETS:
        problems.append(
            f"data.dataset: {config['data']['dataset']!r} is not a registered data set; "
            f"registered: {sorted(DATASETS)}"
        )
    else:
        splits = DATASETS[config["data"]["dataset"]].splits
        problems += [
            f"hessian.sets.{name}: {config['data']['dataset']} has no split {name!r}; each "
            f"Hessian set is named after its split, one of {list(splits)}"
            for name in hess["sets"]
            if name not in splits
        ]
        problems += _source_problems(config["data"])
    problems += curvature_problems(hess.get("curvature", "hessian"), hess.get("method"))
    problems += mask_problems(overlap.get("masks", []))
    if s < k:
        problems.append(f"sketch.s: must be >= sketch.k={k}, got {s}")
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
    width = sketch.get("wave_width")
    if width is not None and width > s:
        problems.append(f"sketch.wave_width: {width} exceeds sketch.s={s}")
    problems += _krylov_problems(config, k, s)
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
    data = DataSpec(**config["data"])
    dim, unfit = _model_problems(config, data)
    problems += unfit
    if dim is not None:
        problems += _dimension_problems(config, dim, k, s)
    # without a data root (no default location) the training job says how to fix it
    with contextlib.suppress(DataError):
        problems += _data_problems(config, data)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _krylov_problems(config: dict[str, Any], k: int, s: int) -> list[str]:
    """The waves: enough directions for ``k`` pairs; an adaptive run's target and budget."""
    sketch, certificate = config["sketch"], config.get("certificate", {})
    passes, width = sketch.get("passes", 1), sketch.get("wave_width") or s
    budget, target = sketch.get("max_hvps"), certificate.get("target")
    problems = []
    if passes == "adaptive":
        if budget is None:
            problems.append(
                "sketch.max_hvps: an adaptive run (sketch.passes: adaptive) needs a budget of "
                f"HVPs; at least sketch.k={k}"
            )
        elif budget < k:
            problems.append(f"sketch.max_hvps: {budget} HVPs span fewer than sketch.k={k}")
        if isinstance(target, int) and not isinstance(target, bool) and target > k:
            problems.append(f"certificate.target: {target} exceeds sketch.k={k}")
    else:
        if passes > 1 and passes * width < k:
            problems.append(
                f"sketch.passes: {passes} waves of {width} HVPs span fewer than sketch.k={k} "
                "directions"
            )
        for key, value in (("sketch.max_hvps", budget), ("certificate.target", target)):
            if value is not None:
                problems.append(
                    f"{key}: only an adaptive run has one (sketch.passes: adaptive); got {value!r} "
                    f"with sketch.passes={passes}"
                )
    return problems


def _dimension_problems(config: dict[str, Any], dim: int, k: int, s: int) -> list[str]:
    """Sizes that must not exceed the model's ``D`` (known from its spec without training)."""
    sketch, exact = config["sketch"], config["exact"]
    model = f"the model's D={dim:,} parameters"
    problems = [
        f"sketch.{key}: {value} exceeds {model}"
        for key, value in (("k", k), ("s", s))
        if value > dim
    ]
    passes, width = sketch.get("passes", 1), sketch.get("wave_width") or s
    if passes != "adaptive" and passes > 1 and passes * width > dim:
        problems.append(
            f"sketch.passes: {passes} waves of {width} HVPs span {passes * width} directions, "
            f"more than {model}"
        )
    budget = sketch.get("max_hvps")
    if passes == "adaptive" and budget is not None and budget > dim:
        problems.append(f"sketch.max_hvps: {budget} HVPs span more directions than {model}")
    if exact["steps"]:
        if exact["k"] > dim:
            problems.append(f"exact.k: {exact['k']} exceeds {model}")
        if dim > exact["max_dim"]:
            problems.append(
                f"exact.steps: a dense float64 Hessian of {model} "
                f"({dim**2 * 8 / 2**30:.1f} GiB) exceeds exact.max_dim={exact['max_dim']:,}; "
                "drop exact.steps (use [] for none) or raise exact.max_dim"
            )
    return problems
