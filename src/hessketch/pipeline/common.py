"""What several stages share: logging, devices, data sets, tables and eigenpair files."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import torch

from hessketch.data import Dataset, get_dataset
from hessketch.errors import DataError, HessketchError, IntegrityError
from hessketch.hessian import deterministic_mode
from hessketch.provenance import (
    check_identity,
    check_inputs,
    hessian_facts,
    quarantine,
    record_outputs,
    run_root,
)
from hessketch.sources import resource_root
from hessketch.store import fresh_temporary, read_json
from hessketch.trajectory import param_hash

__all__ = [
    "DataSpec",
    "EigenpairWriter",
    "Job",
    "check_eigenpairs_at",
    "eigenpair_dims",
    "eigenpair_provenance",
    "open_eigenpairs",
    "pick_device",
    "read_eigenpairs",
    "read_table",
    "run_job",
    "run_stage",
    "setup_logging",
    "write_table",
]

log = logging.getLogger(__name__)


def setup_logging(log_path: str | Path | None = None) -> None:
    """Log INFO and above to ``log_path`` (if given) and to stderr, with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_stage(log_path: str | Path | None, threads: int, stage: Any, **kwargs: Any) -> None:
    """Run one stage function with logging set up; a failure is logged with its traceback."""
    setup_logging(log_path)
    deterministic_mode()  # before any CUDA operation: bit-identical reruns on GPUs too
    torch.set_num_threads(max(1, int(threads)))
    try:
        stage(**kwargs)
    except Exception:
        logging.getLogger(stage.__module__).exception("%s failed", stage.__name__)
        raise


class Job(Protocol):
    """What :func:`run_job` needs of a workflow job (Snakemake's ``snakemake`` object has it)."""

    input: Any
    output: Any
    log: Any
    threads: int
    rule: str


def run_job(job: Job, stage: Any, **kwargs: Any) -> None:
    """Run one stage for one workflow job: what every workflow script calls.

    ``run_job(snakemake, train_model, ...)``. Around :func:`run_stage`: the job's inputs under
    the run are checked against their provenance records first
    (:func:`hessketch.provenance.check_inputs`), and its outputs are recorded with the digests
    of those inputs after the stage succeeds. An input found damaged, edited, stale or
    misplaced (by that check or by the stage's own readers) is put in the run's quarantine
    (:func:`hessketch.provenance.quarantine`) and the error says so: the next plain
    ``snakemake`` regenerates it and what was computed from it.
    """
    setup_logging(job.log[0] if len(job.log) else None)
    try:
        digests = check_inputs(_paths(job.input))
        run_stage(None if not len(job.log) else job.log[0], job.threads, stage, **kwargs)
    except HessketchError as err:
        if err.damaged is None or run_root(err.damaged) is None:
            raise  # not a file of the run (a data file): its own advice stands
        moved = quarantine(err.damaged)
        if moved is not None:
            problem = (
                f"{err.problem}; kept it in quarantine at {moved} and marked it out of date "
                "(nothing is deleted): a plain `snakemake` regenerates it and everything "
                "computed from it"
            )
        elif not Path(err.damaged).exists():
            problem = (
                f"{err.problem}; it is no longer there (another job that read it moved it "
                "aside, or it was deleted): a plain `snakemake` regenerates it"
            )
        else:
            raise
        logging.getLogger(__name__).error("%s", problem)
        raise type(err)(problem) from err
    record_outputs(_paths(job.output), digests, job.rule)


def _paths(files: Any) -> list[str]:
    out: list[str] = []
    for item in files:
        if isinstance(item, (list, tuple)):
            out.extend(_paths(item))
        else:
            out.append(str(item))
    return out


def pick_device(requested: str = "auto") -> torch.device:
    """``"auto"`` → the first CUDA device if there is one, else the CPU; otherwise as named."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HessketchError(f"device {requested!r} was requested, but CUDA is not available here")
    return device


@dataclass(frozen=True)
class DataSpec:
    """Which data set (a registered reader of :data:`hessketch.data.DATASETS`), where, how big.

    ``url`` (``data.url``) set means the data set is retrieved (:mod:`hessketch.sources`) into
    ``resources/<dataset>/`` (relative to the working directory), which is then its root.
    """

    dataset: str
    root: str | None = None
    image_size: int | None = None
    url: str | None = None

    @property
    def reader(self) -> Dataset:
        """The registered reader of :attr:`dataset`."""
        return get_dataset(self.dataset)

    def resolved_root(self) -> Path:
        """The data root: ``root``, else ``resources/<dataset>`` if ``url``, else the default."""
        if self.url is not None and self.root is None:
            return resource_root(self.dataset)
        root = self.root or self.reader.default_root
        if root is None:
            raise DataError(
                f"data set {self.dataset!r} has no default location; set data.root to a folder "
                f"laid out as follows: {self.reader.expected(Path('<data.root>'))}"
            )
        return Path(root)

    def files(self) -> list[Path]:
        """The files (or folders) that define the data and exist now; never raises."""
        try:
            return self.reader.files(self.resolved_root())
        except DataError:
            return []

    def load(
        self, split: str, indices: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(n, C, H, W)`` and labels of ``split`` (or of its points ``indices``)."""
        return self.reader.load(self.resolved_root(), split, indices, self.image_size)

    def labels(self, split: str) -> np.ndarray:
        """The labels of ``split`` (cheap: no images are decoded)."""
        return self.reader.labels(self.resolved_root(), split)

    def num_classes(self) -> int:
        """The number of classes, from the data."""
        return self.reader.num_classes(self.resolved_root())

    def input_shape(self) -> tuple[int, ...]:
        """Shape ``(C, H, W)`` of one input as :meth:`load` gives it."""
        return tuple(self.reader.input_shape(self.image_size))

    def class_counts(self, split: str) -> np.ndarray:
        """Points per class of ``split``, from its labels alone.

        Raises:
            DataError: if the labels are missing or malformed.
        """
        labels = np.asarray(self.labels(split), dtype=np.int64)
        return np.bincount(labels, minlength=self.num_classes())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (without ``url`` when it is None, as descriptions written before it)."""
        spec = asdict(self)
        if spec["url"] is None:
            del spec["url"]
        return spec

    def load_for_training(
        self, split: str, max_bytes: int = 4 * 2**30
    ) -> tuple[torch.Tensor | LazyImages, torch.Tensor]:
        """Inputs and labels of ``split`` for training, in memory or read per mini-batch.

        In memory when the inputs take at most ``max_bytes`` as float32, else
        :class:`LazyImages` that decode each mini-batch on demand (ImageNet), never the whole
        split.
        """
        labels = torch.from_numpy(np.asarray(self.labels(split), dtype=np.int64))
        size = 4 * len(labels) * int(np.prod(self.input_shape()))
        if size <= max_bytes:
            return self.load(split)
        log.info("%s split of %s: %.1f GB as float32, read per mini-batch", split, self, size / 1e9)
        return LazyImages(self, split, len(labels)), labels


class LazyImages:
    """The inputs of a split, read on demand.

    Indexing (by a slice or an index tensor) loads just those points. Stands in for an input
    tensor in :func:`hessketch.training.train_sgd`.
    """

    eval_batch = 250  # points per evaluation batch (decoded at once)

    def __init__(self, data: DataSpec, split: str, n: int, device: str | torch.device = "cpu"):
        self.data, self.split, self.n, self.device = data, split, n, torch.device(device)

    def __len__(self) -> int:
        return self.n

    def to(self, device: str | torch.device) -> LazyImages:
        """The same inputs, delivered on ``device``."""
        return LazyImages(self.data, self.split, self.n, device)

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = np.arange(self.n)[index] if isinstance(index, slice) else index.cpu().numpy()
        x, _ = self.data.load(self.split, rows)
        return x.to(self.device)


def write_table(
    path: str | Path, rows: list[dict[str, Any]], columns: list[str] | None = None
) -> str:
    """Write ``rows`` as a tab-separated table with a header (atomically).

    ``columns`` names the header when there may be no rows (default: the first row's keys).
    Returns the SHA-256 of the file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fieldnames = columns if columns is not None else list(rows[0])
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, path)
    return digest


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read a table written by :func:`write_table` as columns (numeric where possible).

    A table that the overlap summary beside it (``summary.json``) lists is checked against the
    SHA-256 recorded there.

    Raises:
        IntegrityError: if the table does not match the digest its summary records.
    """
    path = Path(path)
    if not path.is_file():
        raise HessketchError(f"table {path} does not exist")
    summary = path.with_name("summary.json")
    tables = read_json(summary, "overlap summary").get("tables", {}) if summary.is_file() else {}
    if path.name in tables:
        if tables[path.name] != hashlib.sha256(path.read_bytes()).hexdigest():
            raise IntegrityError(
                f"table {path} does not match the SHA-256 that {summary} records for it: it "
                "was edited or damaged after it was written",
                damaged=path,
                fix=f"regenerate it: snakemake --forcerun {summary}",
            )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise HessketchError(f"table {path} has no rows")
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            out[key] = np.asarray(values, dtype=np.float64)
        except ValueError:
            out[key] = np.asarray(values)
    return out


class EigenpairWriter:
    """Writes eigenpairs to HDF5 row block by row block; a context manager.

    The file is built under a temporary name and renamed into place by :meth:`close`; if the
    ``with`` block fails, the temporary file is removed and nothing appears at ``path``.
    Layout: ``eigenvalues (k,)`` float64, ``eigenvectors (D, k)`` float32 chunked by rows,
    JSON attributes (provenance, method).
    """

    def __init__(self, path: str | Path, dim: int, k: int, attrs: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = fresh_temporary(self.path)
        self._file = h5py.File(self._tmp, "w")
        # Fletcher-32 checksums per chunk: HDF5 verifies every chunk it reads
        self._vectors = self._file.create_dataset(
            "eigenvectors",
            shape=(dim, k),
            dtype="float32",
            chunks=(min(dim, max(1, 2**20 // k)), k),
            fletcher32=True,
        )
        for key, value in attrs.items():
            self._file.attrs[key] = json.dumps(value, sort_keys=True)

    def write_rows(self, rows: slice, values: torch.Tensor) -> None:
        """Write eigenvector rows ``rows``."""
        self._vectors[rows] = values.to(torch.float32).numpy()

    def close(self, eigenvalues: torch.Tensor, **attrs: Any) -> None:
        """Add the eigenvalues and further attributes, finish the file, move it into place."""
        self._file.create_dataset(
            "eigenvalues", data=eigenvalues.to(torch.float64).numpy(), fletcher32=True
        )
        for key, value in attrs.items():
            self._file.attrs[key] = json.dumps(value, sort_keys=True)
        self._file.attrs[_ATTRS_CHECKSUM] = _attrs_digest(self._file.attrs)
        self._file.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> EigenpairWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            try:  # closing may fail again (a full disk): the temporary goes all the same
                self._file.close()
            except Exception as err:  # the original error is the one raised
                log.warning("closing %s after an error failed too: %s", self._tmp, err)
            finally:
                self._tmp.unlink(missing_ok=True)


_ATTRS_CHECKSUM = "attrs_sha256"


def _attrs_digest(attrs: Any) -> str:
    body = {key: str(attrs[key]) for key in sorted(attrs) if key != _ATTRS_CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def open_eigenpairs(path: str | Path) -> Iterator[h5py.File]:
    """An eigenpair file opened for reading, its integrity checked.

    Its attributes are checked against their SHA-256, its datasets must carry Fletcher-32
    chunk checksums (HDF5 then verifies each chunk as it is read), and any read error inside
    the ``with`` block is reported naming the file.

    Raises:
        IntegrityError: the file is missing, damaged, edited or lacks checksums.
    """
    path = Path(path)
    fix = f"regenerate it: snakemake --forcerun {path}"
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get(_ATTRS_CHECKSUM) != _attrs_digest(f.attrs):
                raise IntegrityError(
                    f"eigenpair file {path}: its attributes do not match their checksum "
                    f"({_ATTRS_CHECKSUM}), or it has none: edited, damaged or written by "
                    "another version of hessketch",
                    damaged=path,
                    fix=fix,
                )
            unchecked = [n for n in ("eigenvalues", "eigenvectors") if not f[n].fletcher32]
            if unchecked:
                raise IntegrityError(
                    f"eigenpair file {path}: {unchecked} carry no chunk checksums",
                    damaged=path,
                    fix=fix,
                )
            provenance = json.loads(f.attrs["provenance"]) if "provenance" in f.attrs else {}
            method = json.loads(f.attrs["method"]) if "method" in f.attrs else None
            facts = {**hessian_facts(provenance), "method": method}
            check_identity(path, facts, "eigenpair file")
            yield f
    except (OSError, KeyError) as err:
        raise IntegrityError(
            f"eigenpair file {path} is missing or damaged: {err}", damaged=path, fix=fix
        ) from err


def read_eigenpairs(
    path: str | Path, k: int | None = None, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Eigenvalues ``(k,)``, eigenvectors and attributes of an eigenpair file (float64).

    Args:
        path: the file.
        k: read only the first ``k`` pairs (default: all).
        rows: read only these rows of the eigenvectors, in this order (default: all ``D``
            rows). A mask overlap needs only the rows of the mask, so large ``D`` never has
            to fit in memory.
    """
    with open_eigenpairs(path) as f:
        values = torch.from_numpy(f["eigenvalues"][:k])
        data = f["eigenvectors"]
        if rows is None:
            vectors = torch.from_numpy(data[:, :k].astype(np.float64))
        else:  # h5py reads increasing indices only: read sorted, then restore the order
            sorted_rows, inverse = torch.unique(rows, sorted=True, return_inverse=True)
            block = data[sorted_rows.numpy(), :k].astype(np.float64)
            vectors = torch.from_numpy(block)[inverse]
        attrs = {key: json.loads(v) for key, v in f.attrs.items() if key != _ATTRS_CHECKSUM}
    return values, vectors, attrs


def eigenpair_row_blocks(path: str | Path, rows_per_block: int) -> Iterator[torch.Tensor]:
    """All rows of an eigenpair file's eigenvectors in order, in float64 blocks.

    ``rows_per_block`` rows at a time, so that a pass over all ``D`` rows holds one block.
    """
    with open_eigenpairs(path) as f:
        data = f["eigenvectors"]
        for start in range(0, data.shape[0], rows_per_block):
            yield torch.from_numpy(data[start : start + rows_per_block].astype(np.float64))


def eigenpair_dims(path: str | Path) -> tuple[int, int]:
    """``(D, k)`` of an eigenpair file (its integrity checked, see :func:`open_eigenpairs`)."""
    with open_eigenpairs(path) as f:
        return tuple(f["eigenvectors"].shape)  # type: ignore[return-value]


def eigenpair_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance attribute of an eigenpair file (parameter hash, step, Hessian set)."""
    with open_eigenpairs(path) as f:
        return json.loads(f.attrs["provenance"])


def check_eigenpairs_at(path: str | Path, theta: torch.Tensor, where: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` was computed at parameters ``theta``.

    ``where`` names those parameters, e.g. "step 100 of results/x/train/trajectory.h5".
    """
    recorded = eigenpair_provenance(path).get("param_hash")
    if recorded != param_hash(theta):
        raise IntegrityError(
            f"eigenpair file {path} was computed at parameters {recorded}, but {where} has "
            f"{param_hash(theta)}: it is stale or belongs to another step",
            damaged=path,
            fix=f"regenerate it: snakemake --forcerun {path}",
        )
