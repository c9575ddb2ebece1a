"""Provenance of a run's files: what each file is, what it was computed from, and quarantine.

Every file a workflow job writes under ``results/<run>/`` gets a *record*,
``results/<run>/provenance/<path>.json``: the file's content digest at the moment it was
written, the digests of the inputs it was computed from, and the rule that wrote it. Before a
job reads its inputs, each input under a run is compared with its record, so a file edited,
copied over or damaged after it was written is caught by its next reader even when the file's
own checksum was recomputed (the record holds the digest it had when its writer finished).
:func:`verify_run` walks every record of a run: each file against its record and each record's
inputs against theirs (the chain).

A file whose identity is written in its path (``set~train/step~0/method~sketched/...``) also
states it in its content (the Hessian set's split, the step, the method); :func:`check_identity`
compares the two, so a file copied to another set's, step's or method's place is named with the
place it belongs to.

A reader that finds an input damaged or misplaced puts it in quarantine with
:func:`quarantine` (a copy under ``results/<run>/quarantine/``, never deleting it, and the
original marked out of date), so that the next plain ``snakemake`` regenerates it and
everything computed from it.

Digests: a file's SHA-256; a directory (a Zarr store, written by several jobs) the SHA-256 of
its root metadata ``zarr.json``, which holds the store's fresh ``store_id``; the chunks are
checked against the receipts of the shards that wrote them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from hessketch.errors import IntegrityError

__all__ = [
    "Break",
    "check_identity",
    "check_inputs",
    "content_digest",
    "file_facts",
    "hessian_facts",
    "path_identity",
    "quarantine",
    "record_outputs",
    "record_path",
    "run_root",
    "verify_run",
]

RECORDS = "provenance"
QUARANTINE = "quarantine"
# Folders of a run that hold no workflow outputs (logs and timings are not results).
UNRECORDED = (RECORDS, QUARANTINE, "logs", "benchmarks")
_CHUNK = 1 << 22
# Inputs outside a run (data files) larger than this are not digested (an ImageNet folder).
_OUTSIDE_LIMIT = 1 << 30
_SEGMENT = re.compile(r"^(set|step|method)~(.+)$")


def run_root(path: str | Path) -> Path | None:
    """``results/<run>`` above ``path``, or None when ``path`` is not inside a run."""
    path = Path(os.path.abspath(path))
    for parent in path.parents:
        if parent.parent.name == "results":
            return parent
    return None


def content_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory's root ``zarr.json`` (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        path = path / "zarr.json"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def record_path(path: str | Path) -> Path | None:
    """Where the record of ``path`` lives (None outside a run)."""
    root = run_root(path)
    if root is None:
        return None
    relative = Path(os.path.abspath(path)).relative_to(root)
    return root / RECORDS / f"{relative}.json"


def _relative(path: str | Path) -> str:
    root = run_root(path)
    absolute = Path(os.path.abspath(path))
    return str(absolute.relative_to(root.parent.parent)) if root else str(path)


def _read_record(path: str | Path) -> dict[str, Any] | None:
    where = record_path(path)
    if where is None or not where.is_file():
        return None
    try:
        record = json.loads(where.read_text())
    except (OSError, ValueError):
        return {"digest": None, "damaged": True}
    return record if isinstance(record, dict) else {"digest": None, "damaged": True}


def record_outputs(
    outputs: Iterable[str | Path], inputs: dict[str, str], rule: str | None = None
) -> None:
    """Write the record of each output under a run (``inputs``: path → digest read)."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for output in outputs:
        where = record_path(output)
        if where is None or not Path(output).exists():
            continue
        record = {
            "path": _relative(output),
            "digest": content_digest(output),
            "rule": rule,
            "written": now,
            "inputs": inputs,
        }
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = where.with_name(f".{where.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, where)


def check_inputs(inputs: Iterable[str | Path]) -> dict[str, str]:
    """Compare each input under a run with its record; return path → digest of all inputs.

    Inputs outside a run (the data files) are digested but have no record to match.

    Raises:
        IntegrityError: with ``damaged`` set to the first input that has no record (it was
            not written by this workflow, or with another version of hessketch) or does not
            match it (edited, copied over or damaged after it was written).
    """
    digests: dict[str, str] = {}
    for path in inputs:
        if not Path(path).exists():
            continue  # the stage itself names what is missing
        if run_root(path) is None:  # a data file: digested when it is one plain file
            if Path(path).is_file() and Path(path).stat().st_size <= _OUTSIDE_LIMIT:
                digests[_relative(path)] = content_digest(path)
            continue
        digest = content_digest(path)
        digests[_relative(path)] = digest
        record = _read_record(path)
        if record is None:
            raise IntegrityError(
                f"{path} has no provenance record ({record_path(path)}): it was not written "
                "by this workflow (copied in?) or by an older version of hessketch",
                damaged=path,
            )
        if record.get("damaged"):
            raise IntegrityError(
                f"{path}: its provenance record {record_path(path)} is unreadable", damaged=path
            )
        if record.get("quarantined"):
            raise IntegrityError(
                f"{path} was found damaged or misplaced by an earlier reader, which kept it at "
                f"{record['quarantined']} and marked it out of date: a plain `snakemake` "
                "regenerates it"
            )
        if record.get("digest") != digest:
            check_identity(path, file_facts(path), "file")  # the clearer message, if it applies
            raise IntegrityError(
                f"{path} is not the file that rule {record.get('rule')} wrote at "
                f"{record.get('written')} (its content digest differs from its provenance "
                "record): it was edited, copied over or damaged since",
                damaged=path,
            )
    return digests


def path_identity(path: str | Path) -> dict[str, str]:
    """The identity a path states: its ``set~``, ``step~`` and ``method~`` segments."""
    found: dict[str, str] = {}
    for part in Path(path).parts:
        match = _SEGMENT.match(part)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def check_identity(path: str | Path, facts: dict[str, Any], what: str) -> None:
    """Raise unless what the file ``path`` holds (``facts``) is what its path says.

    ``facts`` are read from the file's content (``set``: its Hessian set's split, ``step``,
    ``method``); a key the path does not state, or the file does not record, is not compared.

    Raises:
        IntegrityError: naming the file, what it holds and where such a file belongs.
    """
    stated = path_identity(path)
    wrong = {
        key: str(facts[key])
        for key in stated
        if facts.get(key) is not None and str(facts[key]) != stated[key]
    }
    if not wrong:
        return
    parts = []
    for part in Path(path).parts:
        match = _SEGMENT.match(part)
        key = match.group(1) if match else None
        parts.append(f"{key}~{wrong[key]}" if key in wrong else part)
    belongs = Path(*parts)
    holds = ", ".join(f"{key} {value}" for key, value in wrong.items())
    says = ", ".join(f"{key} {stated[key]}" for key in wrong)
    raise IntegrityError(
        f"{what} {path} holds {holds}, but its path says {says}: it was copied or moved here "
        f"from where it belongs ({belongs})",
        damaged=path,
    )


def file_facts(path: str | Path) -> dict[str, Any]:
    """The identity a result file states in its content (empty if it states none).

    Eigenpair files and Hessian sets (HDF5 attributes), JSON results (their ``identity``
    field and ``step``), Zarr stores (the provenance in ``zarr.json``).
    """
    path = Path(path)
    try:
        if path.is_dir():
            attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
            return hessian_facts(attrs.get("provenance") or {})
        if path.suffix == ".json":
            body = json.loads(path.read_text())
            facts = dict(body.get("identity") or {})
            if isinstance(body.get("step"), int):
                facts.setdefault("step", body["step"])
            return facts
        if path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                if "description" in f.attrs:  # a Hessian set
                    return {"set": json.loads(f.attrs["description"]).get("split")}
                if "provenance" in f.attrs and "method" in f.attrs:
                    facts = hessian_facts(json.loads(f.attrs["provenance"]))
                    return {**facts, "method": json.loads(f.attrs["method"])}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}


def hessian_facts(provenance: dict[str, Any]) -> dict[str, Any]:
    """The identity a Hessian's provenance states: its set (the split) and its step."""
    return {
        "set": (provenance.get("hessian_set") or {}).get("split"),
        "step": provenance.get("step"),
    }


def quarantine(path: str | Path) -> Path | None:
    """Keep ``path`` (a file or store under a run) in the run's quarantine, mark it out of date.

    The file (or store) goes to ``results/<run>/quarantine/<path>.<time>.<id>`` as a hard-link
    copy (a plain copy across file systems; nothing is deleted), and the original is marked out
    of date in place: its times are set to 1970 (a store's ``.snakemake_timestamp`` too, if it has
    one), so the
    next plain ``snakemake`` regenerates it and everything computed from it, and its record
    says it was quarantined, so that every other reader in the same run refuses it with that
    message. Leaving it in place, rather than moving it, keeps Snakemake's other scheduled jobs
    from aborting the whole run on a vanished input.

    Returns the quarantine copy, or None when ``path`` is not under a run (data files are never
    touched) or does not exist.
    """
    root = run_root(path)
    path = Path(path)
    if root is None or not path.exists():
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    relative = Path(os.path.abspath(path)).relative_to(root)
    target = root / QUARANTINE / f"{relative}.{stamp}.{uuid.uuid4().hex[:6]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, target, copy_function=_link_or_copy)
        timestamp = path / ".snakemake_timestamp"  # Snakemake's mtime of a directory, if any
        if timestamp.exists():
            os.utime(timestamp, (0, 0))
    else:
        _link_or_copy(str(path), str(target))
    os.utime(path, (0, 0))
    where = record_path(path)
    record = _read_record(path) or {}
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(json.dumps({**record, "quarantined": str(target)}, indent=1))
    return target


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclass(frozen=True)
class Break:
    """One break of a run's provenance chain: the file, what is wrong, the repair."""

    path: str
    problem: str
    repair: str


def verify_run(root: str | Path) -> list[Break]:
    """Walk every record of the run at ``root`` (``results/<run>``); return the breaks.

    Checks each recorded file against its record (missing, changed since written), each
    record's inputs against their current records (computed from another version of an
    input), and reports files of the run that no record describes.
    """
    root = Path(root)
    breaks: list[Break] = []
    records_dir = root / RECORDS
    recorded: dict[str, dict[str, Any]] = {}
    for where in sorted(records_dir.rglob("*.json")) if records_dir.is_dir() else []:
        try:
            record = json.loads(where.read_text())
        except (OSError, ValueError):
            breaks.append(Break(str(where), "the record is unreadable", _plain()))
            continue
        recorded[record["path"]] = record
    base = root.parent.parent
    for name, record in recorded.items():
        path = base / name
        if not path.exists():
            breaks.append(Break(name, "missing", _plain()))
            continue
        if record.get("quarantined"):
            breaks.append(
                Break(name, f"quarantined (kept at {record['quarantined']}), out of date", _plain())
            )
            continue
        if content_digest(path) != record["digest"]:
            breaks.append(
                Break(
                    name,
                    f"changed since rule {record['rule']} wrote it at {record['written']} "
                    "(edited, copied over or damaged)",
                    f"hessketch verify {root} --repair, then {_plain()}",
                )
            )
        for source, digest in record.get("inputs", {}).items():
            upstream = recorded.get(source)
            if upstream is not None and upstream["digest"] != digest:
                breaks.append(
                    Break(
                        name,
                        f"computed from another version of {source} than the one recorded now",
                        _plain(),
                    )
                )
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in UNRECORDED or not path.is_file():
            continue
        if any(part.endswith(".zarr") for part in relative.parts[:-1]):
            continue  # a store's chunks: checked against its shards' receipts
        if path.name.startswith("."):
            continue  # temporaries and Snakemake's markers
        if str(path.relative_to(base)) not in recorded:
            breaks.append(
                Break(
                    str(path.relative_to(base)),
                    "no record describes it: not written by this workflow (copied in?)",
                    f"hessketch verify {root} --repair, then {_plain()}",
                )
            )
    return breaks


def _plain() -> str:
    return "snakemake (a plain run regenerates it and what depends on it)"
