"""docs/outputs.md against a clean run of the tiny study.

The document is the single source: its index (path, rule, when, format, schema) and the schema
tables each row links to are parsed here, and every file of the run is read with plain h5py,
zarr, pandas and json (no hessketch) and compared with them: columns in order and their types,
datasets with dtype, shape, chunks and filters, attributes, Zarr arrays and keys, JSON keys
(nested, with their types). Every file of the run must match a path pattern of the index whose
condition holds, and every such pattern must match a file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "outputs.md"
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


# --------------------------------------------------------------------------- the document


@dataclass
class Table:
    header: list[str]
    rows: list[dict[str, str]]


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)

    def table(self, first: str) -> Table | None:
        found = [t for t in self.tables if t.header[0] == first]
        assert len(found) <= 1, f"section {self.title!r} has {len(found)} {first!r} tables"
        return found[0] if found else None


def slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


def _cells(line: str) -> list[str]:
    assert "\\|" not in line, f"escaped pipe in a table row: {line}"
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_doc(text: str) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    current = Section("")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading:
            current = Section(heading.group(2))
            key = slug(current.title)
            assert key not in sections, f"two headings with the anchor #{key}"
            sections[key] = current
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            header = [re.sub(r"`", "", c) for c in _cells(block[0])]
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", block[1].replace(" ", "")), block[1]
            rows = []
            for row in block[2:]:
                cells = _cells(row)
                assert len(cells) == len(header), f"row has {len(cells)} cells: {row}"
                rows.append(dict(zip(header, cells, strict=True)))
            current.tables.append(Table(header, rows))
            continue
        i += 1
    return sections


SECTIONS = parse_doc(DOC.read_text())


def code(cell: str) -> list[str]:
    """The code spans of a cell (or the cell itself when it has none)."""
    found = re.findall(r"`([^`]+)`", cell)
    return found or [cell.strip()]


def name_of(cell: str) -> str:
    return code(cell)[0]


def tokens_of(cell: str) -> list[str]:
    return [token.strip() for c in code(cell) for token in c.split(",") if token.strip()]


def links(cell: str) -> list[str]:
    return re.findall(r"\]\(#([\w-]+)\)", cell)


def find_table(first: str) -> Table:
    found = [t for s in SECTIONS.values() for t in s.tables if t.header[0] == first]
    assert len(found) == 1, f"expected one {first!r} table, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Entry:
    path: str
    rule: str
    when: tuple[str, ...]
    format: str
    schema: str | None

    @property
    def kind(self) -> str:
        fmt = self.format
        for kind in ("TSV", "JSON", "HDF5", "Zarr v3", "NPZ", "PDF", "PNG", "HTML", "text"):
            if fmt.startswith(kind):
                return kind
        return "other"

    @property
    def is_result(self) -> bool:
        """A file that has a provenance record (a workflow output under the run)."""
        prefixes = ("resources/", "provenance/", "quarantine/", "logs/", "benchmarks/")
        return not self.path.startswith(prefixes)


INDEX = [
    Entry(
        path=name_of(row["path"]),
        rule=name_of(row["rule"]),
        when=tuple(tokens_of(row["when"])),
        format=row["format"],
        schema=(links(row["schema"]) or [None])[0],
    )
    for row in find_table("path").rows
]
INSIDE_STORE = [name_of(row["inside a store"]) for row in find_table("inside a store").rows]


# --------------------------------------------------------------------------- the study


def default(*keys: str) -> Any:
    node = SCHEMA
    for key in keys:
        node = node["properties"][key]
    return node.get("default")


def setting(config: dict, section: str, key: str) -> Any:
    value = config.get(section, {}).get(key, default(section, key))
    return value


def mlp_dim(widths: list[int]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(widths))


@dataclass
class Study:
    """What the tiny study's config says about its outputs."""

    config: dict
    run: Path
    workdir: Path

    @property
    def sets(self) -> dict[str, int]:
        return self.config["hessian"]["sets"]

    @property
    def steps(self) -> list[int]:
        return list(self.config["hessian"]["steps"])

    @property
    def exact_steps(self) -> list[int]:
        return list(setting(self.config, "exact", "steps"))

    @property
    def steps_vs_k(self) -> list[int]:
        return list(self.config.get("plots", {}).get("steps_vs_k") or self.steps)

    @property
    def passes(self) -> Any:
        return setting(self.config, "sketch", "passes")

    @property
    def density(self) -> bool:
        return bool(setting(self.config, "density", "enabled"))

    @property
    def masks(self) -> list[str]:
        return list(setting(self.config, "overlap", "masks"))

    @property
    def shards(self) -> int:
        return setting(self.config, "sketch", "shards")

    @property
    def figures(self) -> list[str]:
        names = ["overlap_over_training", "overlap_vs_k", "spectra", "training_curves"]
        return names + (["spectral_density"] if self.density else [])

    def tokens(self) -> dict[str, bool]:
        model = self.config["model"]["name"]
        assert model == "mlp", "the tiny study's model has no buffers; others may"
        one_pass = self.passes == 1
        url = self.config["data"].get("url") is not None
        dataset = self.config["data"]["dataset"]
        return {
            "always": True,
            "one-pass": one_pass,
            "Krylov": not one_pass,
            "adaptive": self.passes == "adaptive",
            "probes": one_pass and setting(self.config, "sketch", "probes") >= 1,
            "exact": bool(self.exact_steps),
            "density": self.density,
            "buffers": False,
            "url": url,
            "fetch-files": url and dataset in ("mnist", "fashion-mnist"),
            "fetch-archives": url and dataset in ("cifar10", "cifar100"),
            "quarantine": False,  # a clean run
            # the fault tests run `snakemake verify` on this shared run; its log is the trace
            "verify": (self.run / "logs" / "verify.log").is_file(),
        }

    def holds(self, when: tuple[str, ...] | list[str]) -> bool:
        tokens = self.tokens()
        return all(tokens[token] for token in when)

    def symbols(self, groups: dict[str, str]) -> dict[str, Any]:
        config = self.config
        size = config["data"]["image_size"]
        dim = mlp_dim(config["model"]["widths"])
        k = config["sketch"]["k"]
        pairs = setting(config, "certificate", "pairs")
        record = config["training"].get("record_steps") or self.steps
        return {
            "D": dim,
            "T": len(record),
            "B": 0,
            "n": self.sets[groups["set"]] if "set" in groups else None,
            "C": 1,
            "H": size,
            "W": size,
            "k": k,
            "s": config["sketch"].get("s") or 2 * k,
            "q": setting(config, "sketch", "probes"),
            "bs": setting(config, "sketch", "block_size"),
            "K": setting(config, "exact", "k"),
            "b": k if pairs is None else min(pairs, k),
            "R": min(dim, 65536),
            "w": None,  # Krylov only
            "N": None,
            "v": None,
            "r": None,
            "p": setting(config, "density", "probes"),
            "m": None,  # read from the file, not from the config
        }

    def wildcards(self) -> dict[str, str]:
        return {
            "set": "|".join(map(re.escape, self.sets)),
            "step": r"\d+",
            "method": "sketched|exact",
            "i": r"\d+",
            "n": r"\d+",
            "j": r"\d+",
            "figure": "|".join(self.figures),
            "dataset": re.escape(self.config["data"]["dataset"]),
            "name": r"[^/]+",
            "archive": r"[^/]+",
            "member": r".+",
            "path": r".+",
            "time": r"\d{8}T\d{6}",
            "id": r"[0-9a-f]{6}",
            "array": r"[^/]+",
            "r": r"\d+",
            "c": r"\d+",
        }


def compile_pattern(pattern: str, wildcards: dict[str, str]) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", pattern):
        out += re.escape(pattern[pos : m.start()])
        out += f"(?P<{m.group(1)}>{wildcards[m.group(1)]})"
        pos = m.end()
    return re.compile(out + re.escape(pattern[pos:]))


@dataclass
class Match:
    entry: Entry
    path: Path  # the file, or the store's directory
    relative: str
    groups: dict[str, str]


class RunFiles:
    """Every file of the run, each matched to the index (stores as a whole)."""

    def __init__(self, study: Study) -> None:
        self.study = study
        wildcards = study.wildcards()
        self.patterns = [(e, compile_pattern(e.path, wildcards)) for e in INDEX]
        self.inside = [compile_pattern(p, wildcards) for p in INSIDE_STORE]
        self.matches: list[Match] = []
        self.unmatched: list[str] = []
        seen: set[str] = set()
        for relative, _ in self._files():
            found = self._match(relative)
            if found is None:
                self.unmatched.append(relative)
                continue
            match, inner = found
            if inner is not None and not any(p.fullmatch(inner) for p in self.inside):
                self.unmatched.append(relative)
                continue
            if match.relative not in seen:
                seen.add(match.relative)
                self.matches.append(match)

    def _files(self) -> Iterator[tuple[str, Path]]:
        roots = [(self.study.run, "")]
        resources = self.study.workdir / "resources"
        if resources.exists():
            roots.append((resources, "resources/"))
        for root, prefix in roots:
            for folder, _, names in os.walk(root):
                for name in names:
                    path = Path(folder) / name
                    yield prefix + str(path.relative_to(root)), path

    def _candidates(self, relative: str) -> list[Match]:
        out = []
        for entry, pattern in self.patterns:
            m = pattern.fullmatch(relative)
            if m and self.study.holds(entry.when) and self._inner_ok(entry, m.groupdict()):
                root = self.study.workdir if relative.startswith("resources/") else self.study.run
                out.append(Match(entry, root / relative, relative, m.groupdict()))
        return out

    def _inner_ok(self, entry: Entry, groups: dict[str, str]) -> bool:
        """``{path}`` must itself be a documented result (a file or a store)."""
        if "path" not in groups:
            return True
        return any(m.entry.is_result for m in self._candidates(groups["path"]))

    def _match(self, relative: str) -> tuple[Match, str | None] | None:
        found = self._candidates(relative)
        if found:
            assert len(found) == 1, f"{relative} matches {[m.entry for m in found]}"
            return found[0], None
        parts = relative.split("/")
        for cut in range(len(parts) - 1, 0, -1):  # the deepest directory that is documented
            stores = [
                m
                for m in self._candidates("/".join(parts[:cut]))
                if m.entry.kind == "Zarr v3" or m.entry.path.startswith("quarantine/")
            ]
            if stores:
                return stores[0], "/".join(parts[cut:])
        return None

    def of(self, entry: Entry) -> list[Match]:
        return [m for m in self.matches if m.entry == entry]


@pytest.fixture(scope="module")
def study(tiny_run: tuple[Path, dict]) -> Study:
    workdir, config = tiny_run
    return Study(config, workdir / "results" / config["run"], workdir)


@pytest.fixture(scope="module")
def run_files(study: Study) -> RunFiles:
    return RunFiles(study)


# --------------------------------------------------------------------------- schema rows


@dataclass
class Row:
    name: str
    cells: dict[str, str]
    present: tuple[str, ...]


def schema_rows(table: Table, masks: list[str]) -> list[Row]:
    """The rows of a schema table, the ``per mask`` block expanded for ``masks``, in order."""
    rows = [
        Row(name_of(r[table.header[0]]), r, tuple(tokens_of(r.get("present", "`always`"))))
        for r in table.rows
    ]
    out: list[Row] = []
    i = 0
    while i < len(rows):
        if rows[i].present == ("per mask",):
            block = []
            while i < len(rows) and rows[i].present in (("per mask",), ("random mask",)):
                block.append(rows[i])
                i += 1
            for mask in masks:
                column = mask.replace("-", "_")
                for row in block:
                    if row.present == ("per mask",):
                        out.append(Row(row.name.replace("{mask}", column), row.cells, ("always",)))
                    elif mask == "random":
                        out.append(Row(row.name, row.cells, ("always",)))
            continue
        assert rows[i].present != ("random mask",), f"{rows[i].name}: outside a per-mask block"
        out.append(rows[i])
        i += 1
    return out


def schema_of(entry: Entry) -> Section:
    assert entry.schema in SECTIONS, f"{entry.path}: no section #{entry.schema}"
    return SECTIONS[entry.schema]


# --------------------------------------------------------------------------- value types

_KINDS = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "list": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def _alternatives(text: str) -> list[str]:
    """``a or b (x or y)`` → ``["a", "b (x or y)"]``: split at the top level only."""
    out, depth, current = [], 0, ""
    for token in re.split(r"(\s+or\s+|[()\[\]])", text):
        if token in ("(", "["):
            depth += 1
        elif token in (")", "]"):
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s+or\s+", token or ""):
            out.append(current)
            current = ""
        else:
            current += token
    return [*out, current]


def type_kinds(cell: str) -> list[str]:
    text = re.sub(r"\[([^\]]+)\]\(#[\w-]+\)", r"\1", cell).replace("`", "")
    kinds = [alt.strip().split()[0] for alt in _alternatives(text)]
    for kind in kinds:
        assert kind in _KINDS, f"unknown type {kind!r} in {cell!r}"
    return kinds


def check_type(value: Any, cell: str, where: str) -> None:
    kinds = type_kinds(cell)
    assert any(_KINDS[k](value) for k in kinds), f"{where}: {value!r} is not {cell}"


# --------------------------------------------------------------------------- keys


def key_parts(name: str) -> list[str]:
    """``a.b[].c`` → ``[a, b, [], c]``; ``t["x.tsv"]`` → ``[t, x.tsv]``."""
    parts = []
    for m in re.finditer(r'\["([^"]+)"\]|\[\]|[^.\[]+', name):
        parts.append(m.group(1) if m.group(1) is not None else m.group(0))
    return parts


@dataclass
class Node:
    row: Row | None = None
    children: dict[str, Node] = field(default_factory=dict)


def key_tree(rows: list[Row]) -> Node:
    root = Node()
    for row in rows:
        node = root
        for part in key_parts(row.name):
            node = node.children.setdefault(part, Node())
        assert node.row is None, f"key {row.name} documented twice"
        node.row = row
    return root


def _wildcard(part: str) -> re.Pattern[str] | None:
    if "{" not in part:
        return None
    pieces = re.split(r"\{\w+\}", part)
    return re.compile(".+".join(re.escape(p) for p in pieces), re.DOTALL)


def object_tree(anchor: str, study: Study) -> Node:
    section = SECTIONS[anchor]
    table = section.table("key")
    assert table is not None, f"#{anchor} has no key table"
    return key_tree(schema_rows(table, study.masks))


def check_keys(value: Any, node: Node, study: Study, where: str) -> None:
    """``value`` against the documented keys below ``node`` (and the objects it links to)."""
    children = dict(node.children)
    linked: dict[str, Node] = {}
    if node.row is not None:
        for anchor in links(node.row.cells.get("type", "")):
            linked.update(object_tree(anchor, study).children)
    if isinstance(value, list) and linked and "[]" not in children:  # a list of such objects
        for i, element in enumerate(value):
            check_keys(element, Node(None, linked), study, f"{where}[{i}]")
        return
    children.update(linked)
    if not children:
        return
    if "[]" in children:
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for i, element in enumerate(value):
            check_keys(element, children["[]"], study, f"{where}[{i}]")
        return
    if value is None:
        return  # a documented "object or null"
    assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
    exact = {part: child for part, child in children.items() if _wildcard(part) is None}
    patterns = [(_wildcard(p), c) for p, c in children.items() if _wildcard(p) is not None]
    for part, child in exact.items():
        assert child.row is not None, f"{where}.{part}: an undocumented parent key"
        if study.holds(child.row.present):
            assert part in value, f"{where}: documented key {part!r} is missing"
        else:
            assert part not in value, f"{where}: key {part!r} present, but documented as absent"
    for key, item in value.items():
        if key in exact:
            child = exact[key]
        else:
            found = [c for p, c in patterns if p.fullmatch(key) and study.holds(c.row.present)]
            assert found, f"{where}: key {key!r} is not documented"
            child = found[0]
        check_type(item, child.row.cells["type"], f"{where}.{key}")
        check_keys(item, child, study, f"{where}.{key}")


def check_json_keys(value: dict, section: Section, study: Study, where: str) -> None:
    table = section.table("key")
    assert table is not None, f"{section.title}: no key table"
    check_keys(value, key_tree(schema_rows(table, study.masks)), study, where)


# --------------------------------------------------------------------------- file checks


def shape_of(cell: str, symbols: dict[str, Any]) -> Any:
    text = name_of(cell)
    if text in ("contiguous", "auto"):
        return text
    return eval(text, {"__builtins__": {}, "min": min, "max": max}, symbols)


def check_tsv(match: Match, section: Section, study: Study) -> pd.DataFrame:
    table = section.table("column")
    assert table is not None, f"{section.title}: no column table"
    rows = [r for r in schema_rows(table, study.masks) if study.holds(r.present)]
    frame = pd.read_csv(match.path, sep="\t")
    documented = [r.name for r in rows]
    assert list(frame.columns) == documented, f"{match.relative}: {list(frame.columns)}"
    for row in rows:
        column, kind = frame[row.name], row.cells["type"]
        where = f"{match.relative}: column {row.name}"
        if len(column) == 0:
            continue
        if kind in ("int", "0/1"):
            assert pd.api.types.is_integer_dtype(column), f"{where}: {column.dtype}"
            if kind == "0/1":
                assert set(column.unique()) <= {0, 1}, where
        elif kind == "float":
            assert pd.api.types.is_numeric_dtype(column), f"{where}: {column.dtype}"
            assert not pd.api.types.is_bool_dtype(column), where
        elif kind == "string":
            assert pd.api.types.is_string_dtype(column) or column.dtype == object, where
        else:
            raise AssertionError(f"{where}: unknown column type {kind!r}")
    return frame


def check_json(match: Match, section: Section, study: Study) -> dict:
    value = json.loads(match.path.read_text())
    check_json_keys(value, section, study, match.relative)
    return value


def _hdf5_attribute(raw: Any, cell: str, where: str) -> tuple[Any, str]:
    assert isinstance(raw, str), f"{where}: attribute is {type(raw)}, not text"
    if cell.startswith("JSON "):
        return json.loads(raw), cell[len("JSON ") :]
    return raw, cell


def check_hdf5(match: Match, section: Section, study: Study) -> None:
    symbols = study.symbols(match.groups)
    datasets = [r for r in schema_rows(section.table("dataset"), study.masks)]
    present = {r.name: r for r in datasets if study.holds(r.present)}
    with h5py.File(match.path, "r") as f:
        found: dict[str, h5py.Dataset] = {}

        def visit(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                found[name] = item

        f.visititems(visit)
        assert sorted(found) == sorted(present), f"{match.relative}: datasets {sorted(found)}"
        for name, row in present.items():
            ds, where = found[name], f"{match.relative}: {name}"
            if row.cells["dtype"] == "string":
                assert h5py.check_string_dtype(ds.dtype) is not None, f"{where}: {ds.dtype}"
            else:
                assert ds.dtype == np.dtype(row.cells["dtype"]), f"{where}: {ds.dtype}"
            assert ds.shape == shape_of(row.cells["shape"], symbols), f"{where}: {ds.shape}"
            chunks = shape_of(row.cells["chunks"], symbols)
            if chunks == "contiguous":
                assert ds.chunks is None, f"{where}: chunks {ds.chunks}"
            elif chunks == "auto":
                assert ds.chunks is not None, f"{where}: not chunked"
            else:
                assert ds.chunks == chunks, f"{where}: chunks {ds.chunks}"
            filters = name_of(row.cells["filters"])
            assert ds.fletcher32 == (filters == "fletcher32"), f"{where}: fletcher32"
            assert ds.compression is None, f"{where}: compressed"
        table = section.table("attribute")
        tree = key_tree(schema_rows(table, study.masks))
        attrs = dict(f.attrs)
    for name, child in tree.children.items():
        if study.holds(child.row.present):
            assert name in attrs, f"{match.relative}: attribute {name} is missing"
        else:
            assert name not in attrs, f"{match.relative}: attribute {name} documented absent"
    for name, raw in attrs.items():
        assert name in tree.children, f"{match.relative}: attribute {name} is not documented"
        child = tree.children[name]
        value, kind = _hdf5_attribute(raw, child.row.cells["type"], f"{match.relative}: {name}")
        check_type(value, kind, f"{match.relative}: attribute {name}")
        check_keys(value, child, study, f"{match.relative}: {name}")


def check_zarr(match: Match, section: Section, study: Study) -> None:
    symbols = study.symbols(match.groups)
    meta = json.loads((match.path / "zarr.json").read_text())
    assert (meta["zarr_format"], meta["node_type"]) == (3, "group"), match.relative
    group = zarr.open_group(str(match.path), mode="r")
    rows = {r.name: r for r in schema_rows(section.table("array"), study.masks)}
    rows = {name: r for name, r in rows.items() if study.holds(r.present)}
    with warnings.catch_warnings():  # zarr notes Snakemake's .snakemake_timestamp in the store
        warnings.filterwarnings("ignore", "Object at .snakemake_timestamp is not recognized")
        arrays, groups = sorted(group.array_keys()), list(group.group_keys())
    assert arrays == sorted(rows), f"{match.relative}: arrays {arrays}"
    assert not groups, f"{match.relative}: has subgroups {groups}"
    for name, row in rows.items():
        array, where = group[name], f"{match.relative}: {name}"
        assert array.dtype == np.dtype(row.cells["dtype"]), f"{where}: {array.dtype}"
        assert array.shape == shape_of(row.cells["shape"], symbols), f"{where}: {array.shape}"
        assert array.chunks == shape_of(row.cells["chunks"], symbols), f"{where}: {array.chunks}"
        assert name_of(row.cells["fill"]) == "NaN" and math.isnan(array.fill_value), where
        assert array.compressors == (), f"{where}: compressors {array.compressors}"
        array_meta = json.loads((match.path / name / "zarr.json").read_text())
        assert array_meta["zarr_format"] == 3 and array_meta["node_type"] == "array", where
        assert [c["name"] for c in array_meta["codecs"]] == ["bytes"], where
    check_json_keys(dict(group.attrs), section, study, f"{match.relative}: attributes")


def check_npz(match: Match, section: Section, study: Study) -> None:
    symbols = study.symbols(match.groups)
    rows = {r.name: r for r in schema_rows(section.table("member"), study.masks)}
    with np.load(match.path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(rows), match.relative
        for name, row in rows.items():
            assert data[name].dtype == np.dtype(row.cells["dtype"]), f"{match.relative}: {name}"
            assert len(data[name].shape) == len(shape_of(row.cells["shape"], symbols))


def check_figure(match: Match, study: Study) -> None:
    head = match.path.read_bytes()[:24]
    if match.entry.kind == "PDF":
        assert head.startswith(b"%PDF-"), match.relative
        return
    assert head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR", match.relative
    width, height = struct.unpack(">II", head[16:24])
    style = study.config.get("plots", {}).get("style", {})
    dpi = style.get("dpi", 150)
    panels = 2 if match.groups["figure"] == "training_curves" else len(study.sets)
    expected = (style.get("width", 5.0) * panels * dpi, style.get("height", 3.4) * dpi)
    assert abs(width - expected[0]) <= 1 and abs(height - expected[1]) <= 1, (width, height)


def check_html(match: Match, section: Section, study: Study) -> None:
    text = match.path.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</div>"), match.relative
    assert "<script" not in text, match.relative
    found = []
    for row in schema_rows(section.table("element"), study.masks):
        element = row.name.replace("{run}", study.config["run"])
        if study.holds(row.present):
            assert element in text, f"{match.relative}: {element} is missing"
            found.append(text.index(element))
        else:
            assert element not in text, f"{match.relative}: {element} documented absent"
    assert found == sorted(found), f"{match.relative}: the sections are in another order"


ROWS = {  # row counts the schema sections state, where the config fixes them
    "training-metrics": lambda s, m: len(
        set(range(0, s.config["training"]["steps"] + 1, s.config["training"]["eval_every"]))
        | {s.config["training"]["steps"]}
    ),
    "overlap-table": lambda s, m: s.symbols(m.groups)["K" if "exact" in m.relative else "k"],
    "spectrum-table": lambda s, m: s.symbols(m.groups)["K" if "exact" in m.relative else "k"],
    "certificate-table": lambda s, m: s.symbols(m.groups)["b"],
    "comparison-table": lambda s, m: len(s.exact_steps),
}


def check_match(match: Match, study: Study) -> None:
    entry = match.entry
    section = schema_of(entry) if entry.schema else None
    if entry.kind == "TSV":
        frame = check_tsv(match, section, study)
        if entry.schema in ROWS:
            assert len(frame) == ROWS[entry.schema](study, match), match.relative
    elif entry.kind == "JSON":
        value = check_json(match, section, study)
        if entry.schema == "provenance-record":
            assert value["path"] == f"results/{study.config['run']}/{match.groups['path']}"
    elif entry.kind == "HDF5":
        check_hdf5(match, section, study)
    elif entry.kind == "Zarr v3":
        assert match.path.is_dir(), match.relative
        check_zarr(match, section, study)
    elif entry.kind == "NPZ":
        check_npz(match, section, study)
    elif entry.kind in ("PDF", "PNG"):
        check_figure(match, study)
    elif entry.kind == "HTML":
        check_html(match, section, study)
    elif entry.kind == "text":
        assert match.path.is_file()
        match.path.read_text(encoding="utf-8")
    else:
        assert match.path.exists()


# --------------------------------------------------------------------------- expectations


def expected_combinations(entry: Entry, study: Study) -> set[tuple] | None:
    """The (set, method, step, shard) a pattern must match, all of them, or None."""
    names = set(re.findall(r"\{(\w+)\}", entry.path))
    if not names & {"set", "step", "i"} or names & {"j", "path"}:
        return None
    sets = list(study.sets) if "set" in names else [None]
    methods = ["sketched", "exact"] if "method" in names else [None]
    shards = [(i, study.shards) for i in range(1, study.shards + 1)] if "i" in names else [None]
    out = set()
    for hset in sets:
        for method in methods:
            exact = method == "exact" or entry.rule == "exact_hessian"
            exact = exact or "method~exact" in entry.path
            if "step" not in names:
                steps: list[int | None] = [None]
            elif exact:
                steps = list(study.exact_steps)
            elif entry.rule == "spectral_density":
                steps = list(study.steps_vs_k)
            else:
                steps = list(study.steps)
            for step in steps:
                for shard in shards:
                    out.add((hset, method, step, shard))
    return out


def found_combinations(matches: list[Match]) -> set[tuple]:
    out = set()
    for m in matches:
        g = m.groups
        step = int(g["step"]) if "step" in g else None
        shard = (int(g["i"]), int(g["n"])) if "i" in g else None
        out.add((g.get("set"), g.get("method"), step, shard))
    return out


# --------------------------------------------------------------------------- the tests


TOKEN_NAMES = {
    *"always one-pass Krylov adaptive probes exact density buffers url quarantine verify".split(),
    *("fetch-files", "fetch-archives", "per mask", "random mask"),
}
SYMBOL_NAMES = set("D T B n C H W k s q bs K b R w N v r p m".split())
WILDCARD_NAMES = set(
    "set step method i n j figure dataset name archive member path time id array r c".split()
)


def test_the_document_is_consistent() -> None:
    tokens = {name for r in find_table("token").rows for name in code(r["token"])}
    assert tokens == TOKEN_NAMES
    symbols = {name for r in find_table("symbol").rows for name in code(r["symbol"])}
    assert symbols == SYMBOL_NAMES
    wildcards = {n.strip("{}") for r in find_table("wildcard").rows for n in code(r["wildcard"])}
    assert wildcards == WILDCARD_NAMES
    used = {w for e in INDEX for w in re.findall(r"\{(\w+)\}", e.path)}
    used |= {w for p in INSIDE_STORE for w in re.findall(r"\{(\w+)\}", p)}
    assert used <= wildcards, used - wildcards
    linked = {e.schema for e in INDEX if e.schema}
    for entry in INDEX:
        assert set(entry.when) <= tokens, entry
        assert entry.kind != "other" or entry.schema is not None, entry
    for section in SECTIONS.values():
        for table in section.tables:
            for row in table.rows:
                linked.update(links(" ".join(row.values())))
                if "present" in row:
                    assert set(tokens_of(row["present"])) <= tokens, (section.title, row)
                if "type" in row and table.header[0] in ("key", "attribute"):
                    type_kinds(row["type"].removeprefix("JSON "))
    missing = {anchor for anchor in linked if anchor not in SECTIONS}
    assert not missing, f"links to missing sections: {missing}"
    level3 = {slug(m) for m in re.findall(r"^### (.+)$", DOC.read_text(), re.MULTILINE)}
    assert level3 <= linked, f"sections no row links to: {level3 - linked}"
    assert "docs/outputs.md" in (REPO / "README.md").read_text()


def test_the_study_has_every_name_of_the_document(study: Study) -> None:
    assert set(study.tokens()) | {"per mask", "random mask"} == TOKEN_NAMES
    assert set(study.symbols({})) == SYMBOL_NAMES
    assert set(study.wildcards()) == WILDCARD_NAMES


def test_every_file_of_the_run_is_documented(run_files: RunFiles) -> None:
    assert run_files.unmatched == [], "files no pattern of docs/outputs.md describes"


@pytest.mark.parametrize("entry", INDEX, ids=[f"{e.rule}:{e.path}" for e in INDEX])
def test_documented_files(entry: Entry, study: Study, run_files: RunFiles) -> None:
    matches = run_files.of(entry)
    if not study.holds(entry.when):
        assert matches == []
        return
    assert matches, f"no file of the tiny run matches {entry.path}"
    expected = expected_combinations(entry, study)
    if expected is not None:
        assert found_combinations(matches) == expected, entry.path
    for match in matches:
        check_match(match, study)
    if entry.is_result:  # every file a job writes under the run has a provenance record
        for match in matches:
            record = study.run / "provenance" / f"{match.relative}.json"
            assert record.is_file(), f"{match.relative} has no provenance record"
