"""Data sets: a registry of readers, one per data set, and the file formats they read.

A data set is added by registering one reader, a subclass of `Dataset`::

    @register_dataset("kmnist")
    class KuzushijiMnist(IdxDataset):
        default_root = None

Readers included: "mnist" and "fashion-mnist" (MNIST-style IDX files), "cifar10" and
"cifar100" (the official python version: pickled batches) and "imagenet" (ILSVRC-2012 as a
class-per-folder JPEG tree, read lazily). No torchvision: every format is read here, so that
every failure is a `DataError` that names the file at fault and, when a file is missing, says
exactly which files to place where (there is no download).

The MNIST-style helpers (`read_idx`, `find_idx_file`, `load_idx_split`, `area_downsample`,
`balanced_indices`) remain usable on their own.
"""

from __future__ import annotations

import abc
import gzip
import os
import pickle
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hessketch.errors import DataError

IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Side length of the images stored in MNIST-style IDX files.
IDX_IMAGE_SIZE = 28

# Location used by the Debian package dataset-fashion-mnist.
_FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")

_GENERIC_HINT = "set `data.root` in the config to a folder with the IDX files"
_FASHION_HINT = (
    "install the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or "
    + _GENERIC_HINT
)

# IDX type code -> big-endian numpy dtype.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

IndexLike = Sequence[int] | np.ndarray | torch.Tensor


# --- registry -------------------------------------------------------------------------


class ImageSizeError(DataError, ValueError):
    """An image size a data set cannot provide (both a `DataError` and a `ValueError`)."""


class Dataset(abc.ABC):
    """Reader of one data set; `register_dataset` makes the one instance per registered name.

    Attributes:
        name: The registered name (set by `register_dataset`).
        splits: The splits the data set has, e.g. ("train", "test").
        eval_split: The split training evaluates on, one of `splits`.
        default_root: Where the data lie when the config names no root; None for no default.
        format_classes: The class count the format fixes (IDX 10, CIFAR-100 100), known before
            any file is read, so that configs can be checked before the data are there; None
            where only the data tell (an ImageNet tree may hold any number of classes).
    """

    name: str = ""
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    eval_split: ClassVar[str] = "test"
    default_root: ClassVar[Path | None] = None
    format_classes: ClassVar[int | None] = None

    @abc.abstractmethod
    def files(self, root: Path) -> list[Path]:
        """Return the files (or folders) under `root` that exist now and define the data.

        Never raises: meant for workflow rule inputs, where a missing file is no input and the
        job that reads it fails naming it.
        """

    @abc.abstractmethod
    def expected(self, root: Path) -> str:
        """Return one sentence saying exactly which files to place where under `root`."""

    @abc.abstractmethod
    def labels(self, root: Path, split: str) -> np.ndarray:
        """Return the int64 labels of `split`, in file order, without decoding any image.

        Raises:
            ValueError: If `split` is unknown.
            DataError: If a file is missing or malformed, or a label is out of range.
        """

    @abc.abstractmethod
    def num_classes(self, root: Path) -> int:
        """Return the number of classes, as the data define it (checked against the data).

        Raises:
            DataError: If a file is missing or malformed.
        """

    @abc.abstractmethod
    def input_shape(self, image_size: int | None) -> tuple[int, int, int]:
        """Return the shape (C, H, W) of one input as `load` gives it.

        Raises:
            ImageSizeError: If the data set cannot provide `image_size`.
        """

    @abc.abstractmethod
    def load(
        self,
        root: Path,
        split: str,
        indices: IndexLike | None = None,
        image_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Load (part of) a split.

        Args:
            root: The data root.
            split: One of `splits`.
            indices: Positions within the split to load, in the order wanted (repeats
                allowed); None loads the whole split in file order.
            image_size: Side length of the images; None for the data set's default.

        Returns:
            (x, y): x float32 of shape (n, C, H, W), normalised as the data set prescribes;
            y int64 of shape (n,).

        Raises:
            ValueError: If `split` is unknown or `indices` is not 1-D integer.
            IndexError: If an index is out of range.
            ImageSizeError: If the data set cannot provide `image_size`.
            DataError: If a file is missing, malformed or inconsistent.
        """

    def resolve_root(self, root: str | Path | None) -> Path:
        """Return `root` as a Path, or the default root when `root` is None.

        Raises:
            DataError: If `root` is None and the data set has no default location.
        """
        if root is not None:
            return Path(root)
        if self.default_root is None:
            raise DataError(
                f"data set {self.name!r} has no default location; set `data.root` in the "
                f"config and there {self.expected(Path('<data.root>'))}"
            )
        return self.default_root

    def check_split(self, split: str) -> None:
        """Raise ValueError, listing the splits, if `split` is not one of `splits`."""
        if split not in self.splits:
            raise ValueError(
                f"unknown split {split!r} of data set {self.name!r}; "
                f"expected one of {list(self.splits)}"
            )


DATASETS: dict[str, Dataset] = {}


def register_dataset(name: str) -> Callable[[type[Dataset]], type[Dataset]]:
    """Class decorator: instantiate a `Dataset` subclass and register it under `name`.

    Args:
        name: The data set's name, as configs give it.

    Returns:
        The decorator; it returns the class unchanged.

    Raises:
        ValueError: If `name` is already registered or the class's `eval_split` is not one
            of its `splits`.
        TypeError: If the decorated object is not a concrete `Dataset` subclass.
    """

    def decorator(cls: type[Dataset]) -> type[Dataset]:
        if not (isinstance(cls, type) and issubclass(cls, Dataset)):
            raise TypeError(f"register_dataset({name!r}) needs a Dataset subclass, got {cls!r}")
        if name in DATASETS:
            raise ValueError(
                f"data set {name!r} is already registered (by {type(DATASETS[name]).__name__})"
            )
        if cls.eval_split not in cls.splits:
            raise ValueError(
                f"data set {name!r}: eval_split {cls.eval_split!r} is not one of its splits "
                f"{list(cls.splits)}"
            )
        instance = cls()
        instance.name = name
        DATASETS[name] = instance
        return cls

    return decorator


def get_dataset(name: str) -> Dataset:
    """Return the reader registered under `name`.

    Raises:
        ValueError: If `name` is not registered; the message lists the registered names.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name]


def default_root(name: str) -> Path | None:
    """Return the default data root of a registered dataset.

    Args:
        name: Dataset name, a key of `DATASETS`.

    Returns:
        The default root folder, or None when the dataset has no default location.

    Raises:
        ValueError: If `name` is not a registered dataset.
    """
    return get_dataset(name).default_root


# --- shared helpers -------------------------------------------------------------------


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _as_indices(indices: IndexLike | None, n: int, what: str) -> np.ndarray | None:
    """Validate positions into a split of n points; None stays None."""
    if indices is None:
        return None
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= n:
        bad = int(idx[(idx < 0) | (idx >= n)][0])
        raise IndexError(f"index {bad} out of range for {what}: it has {n} points (0..{n - 1})")
    return idx


def _check_image_size(image_size: Any, ok: Callable[[int], bool], name: str, allowed: str) -> None:
    if image_size is None:
        return
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int | np.integer)
        or not ok(int(image_size))
    ):
        raise ImageSizeError(f"data set {name!r}: image_size must be {allowed}, got {image_size!r}")


def _normalise(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (n, C, H, W) -> float32 scaled to [0, 1], then (x - mean) / std per channel."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32) / 255.0
    x.sub_(torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
    x.div_(torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
    return x


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (as used by MNIST and Fashion-MNIST), gzipped or plain.

    Compression is detected from the gzip magic bytes, not from the file name.

    Args:
        path: Path of the IDX file.

    Returns:
        The array, with the shape from the header and a native-byte-order dtype.

    Raises:
        DataError: If the file is missing, is not valid gzip, has a bad magic number or an
            unknown type code, or its data size does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise DataError(f"IDX file {path}: expected a file, found {what}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"IDX file {path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(
            f"IDX file {path}: bad magic number, expected two zero bytes, a type code and "
            f"a dimension count, found {raw[:4].hex(' ') or 'an empty file'}"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise DataError(f"IDX file {path}: unknown type code 0x{code:02X}, expected one of {known}")
    dtype = _IDX_TYPES[code]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"IDX file {path}: truncated header, expected {header} bytes for {ndim} "
            f"dimensions, found {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        kind = "truncated data" if found < expected else "trailing bytes"
        raise DataError(
            f"IDX file {path}: {kind}, expected {expected} data bytes for shape {shape} "
            f"of {dtype.name}, found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    # astype copies: the result is writable and in native byte order, as torch needs.
    return data.astype(dtype.newbyteorder("="))


def find_idx_file(root: str | Path, stem: str) -> Path:
    """Locate an IDX file in a data root, plain (`stem`) or gzipped (`stem.gz`).

    Args:
        root: Folder holding the IDX files.
        stem: File name without the `.gz` suffix, e.g. "t10k-images-idx3-ubyte".

    Returns:
        The path of the file found, the plain one preferred.

    Raises:
        DataError: If neither file exists; the message lists the paths looked for.
    """
    root = Path(root)
    candidates = [root / stem, root / f"{stem}.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    hint = _FASHION_HINT if root == _FASHION_ROOT else _GENERIC_HINT
    where = "" if root.is_dir() else f" (the data root {root} does not exist or is not a folder)"
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"IDX file {stem} not found; looked for {looked}{where}; {hint}")


def area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Build the (n_out × n_in) area-averaging matrix of a 1-D resize.

    Output pixel i covers input interval [i·n_in/n_out, (i+1)·n_in/n_out); its row holds
    the covered fraction of each input pixel divided by the box length, so rows sum to 1.

    Args:
        n_in: Input length.
        n_out: Output length, 1 <= n_out <= n_in.

    Returns:
        A float64 tensor of shape (n_out, n_in).

    Raises:
        ValueError: If the lengths are not positive or n_out > n_in.
    """
    if n_in < 1 or n_out < 1 or n_out > n_in:
        raise ValueError(f"area_matrix needs 1 <= n_out <= n_in, got n_in={n_in}, n_out={n_out}")
    # Work in units of 1/n_out of an input pixel, so overlaps are exact integers.
    i = torch.arange(n_out, dtype=torch.int64).unsqueeze(1)
    j = torch.arange(n_in, dtype=torch.int64).unsqueeze(0)
    lo = torch.maximum(i * n_in, j * n_out)
    hi = torch.minimum((i + 1) * n_in, (j + 1) * n_out)
    return (hi - lo).clamp(min=0).to(torch.float64) / n_in


def area_downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Downsample images to size × size by exact area averaging (PIL BOX, OpenCV INTER_AREA).

    Computes A_h X A_wᵀ for each image X with `area_matrix` factors.

    Args:
        images: Float tensor of shape (N, H, W).
        size: Output side length, at most min(H, W).

    Returns:
        Tensor of shape (N, size, size) and the dtype of `images`; `images` itself when
        size equals both H and W.

    Raises:
        ValueError: If `images` is not 3-D or `size` is not in 1..min(H, W).
    """
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got shape {tuple(images.shape)}")
    _, h, w = images.shape
    if size < 1 or size > h or size > w:
        raise ValueError(f"size must be in 1..min(H, W) = 1..{min(h, w)}, got {size}")
    if size == h and size == w:
        return images
    a_h = area_matrix(h, size).to(images.dtype)
    a_w = area_matrix(w, size).to(images.dtype)
    return a_h @ images @ a_w.T


def _idx_label_type_error(labels: np.ndarray, label_path: Path) -> DataError | None:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        return DataError(
            f"IDX file {label_path}: expected 1-D integer labels, "
            f"found {labels.ndim}-D {labels.dtype}"
        )
    return None


def _idx_label_range_error(labels: np.ndarray, label_path: Path, of: str) -> DataError | None:
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        return DataError(
            f"IDX file {label_path}{of}: expected labels in 0..9, "
            f"found range {labels.min()}..{labels.max()}"
        )
    return None


def _read_idx_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an image file and its label file (uint8 images, labels 0..9)."""
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"IDX file {image_path}: expected 3-D unsigned byte images, "
            f"found {images.ndim}-D {images.dtype}"
        )
    if error := _idx_label_type_error(labels, label_path):
        raise error
    if len(images) != len(labels):
        raise DataError(
            f"IDX files {image_path} and {label_path} disagree: "
            f"{len(images)} images but {len(labels)} labels"
        )
    if error := _idx_label_range_error(labels, label_path, f" (labels for {image_path})"):
        raise error
    return images, labels


def _idx_images_to_tensor(images: np.ndarray, image_size: int | None) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 in [0, 1], area-downsampled to image_size if given."""
    x = torch.from_numpy(images).to(torch.float32) / 255.0
    if image_size is not None:
        # Float32 rounding in the weights can overshoot 1 by an ulp; keep the promised range.
        x = area_downsample(x, image_size).clamp_(0.0, 1.0)
    return x


def load_idx_split(
    root: str | Path, split: str, image_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of an MNIST-style dataset from IDX files.

    Args:
        root: Folder holding the IDX files (plain or gzipped).
        split: "train" or "test".
        image_size: Side length to area-downsample to; None keeps the stored size.

    Returns:
        (x, y): x float32 of shape (N, image_size²) (or (N, H·W)) with values in [0, 1],
        y int64 of shape (N,) with values in 0..9.

    Raises:
        ValueError: If `split` is unknown or `image_size` is out of range.
        DataError: If a file is missing or malformed, or images and labels disagree.
    """
    if split not in IDX_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(IDX_FILES)}")
    image_path, label_path = (find_idx_file(root, stem) for stem in IDX_FILES[split])
    images, labels = _read_idx_pair(image_path, label_path)
    x = _idx_images_to_tensor(images, image_size)
    y = torch.from_numpy(labels).to(torch.int64)
    return x.reshape(len(x), -1), y


class IdxDataset(Dataset):
    """MNIST-style IDX data: 28×28 grey images, labels 0..9, splits "train" and "test".

    Inputs are in [0, 1] without normalisation; `image_size` (1..28) area-averages the images
    exactly as `load_idx_split` does, so results match it bit for bit.
    """

    hint: ClassVar[str] = ""  # appended to `expected`, e.g. a package that installs the files
    format_classes = 10

    def _find(self, root: Path, stem: str) -> Path:
        root = Path(root)
        for candidate in (root / stem, root / f"{stem}.gz"):
            if _is_file(candidate):
                return candidate
        where = (
            "" if _is_dir(root) else f" (the data root {root} does not exist or is not a folder)"
        )
        raise DataError(
            f"{self.name}: IDX file {root / stem} (or {stem}.gz) not found{where}; "
            f"{self.expected(root)}"
        )

    def files(self, root: Path) -> list[Path]:
        """Return the IDX files found under `root` (plain preferred to gzipped)."""
        found = []
        for stems in IDX_FILES.values():
            for stem in stems:
                for candidate in (Path(root) / stem, Path(root) / f"{stem}.gz"):
                    if _is_file(candidate):
                        found.append(candidate)
                        break
        return found

    def expected(self, root: Path) -> str:
        """Say which IDX files to place in `root`."""
        stems = [stem for pair in IDX_FILES.values() for stem in pair]
        return (
            f"place the IDX files {', '.join(stems[:-1])} and {stems[-1]} (each plain or "
            f"gzipped as NAME.gz) in {root}{self.hint}"
        )

    def labels(self, root: Path, split: str) -> np.ndarray:
        """Return the labels of `split` from its label file alone."""
        self.check_split(split)
        label_path = self._find(root, IDX_FILES[split][1])
        labels = read_idx(label_path)
        for error in (
            _idx_label_type_error(labels, label_path),
            _idx_label_range_error(labels, label_path, ""),
        ):
            if error:
                raise error
        return labels.astype(np.int64)

    def num_classes(self, root: Path) -> int:
        """Return 10, after checking that the training labels lie in 0..9."""
        self.labels(root, "train")
        return 10

    def _check_size(self, image_size: int | None) -> None:
        _check_image_size(
            image_size, lambda s: 1 <= s <= IDX_IMAGE_SIZE, self.name, f"1..{IDX_IMAGE_SIZE}"
        )

    def input_shape(self, image_size: int | None) -> tuple[int, int, int]:
        """Return (1, s, s), s = image_size or 28."""
        self._check_size(image_size)
        size = IDX_IMAGE_SIZE if image_size is None else int(image_size)
        return (1, size, size)

    def load(
        self,
        root: Path,
        split: str,
        indices: IndexLike | None = None,
        image_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Load (part of) a split: x (n, 1, s, s) in [0, 1], y (n,) in 0..9."""
        self.check_split(split)
        self._check_size(image_size)
        image_path, label_path = (self._find(root, stem) for stem in IDX_FILES[split])
        images, labels = _read_idx_pair(image_path, label_path)
        if images.shape[1:] != (IDX_IMAGE_SIZE, IDX_IMAGE_SIZE):
            raise DataError(
                f"IDX file {image_path}: expected {IDX_IMAGE_SIZE}×{IDX_IMAGE_SIZE} images, "
                f"found {images.shape[1]}×{images.shape[2]}"
            )
        idx = _as_indices(indices, len(labels), f"split {split!r} of {self.name}")
        if idx is not None:
            images, labels = images[idx], labels[idx]
        x = _idx_images_to_tensor(images, None if image_size is None else int(image_size))
        y = torch.from_numpy(labels.astype(np.int64))
        return x.reshape(len(x), 1, *x.shape[1:]), y


@register_dataset("mnist")
class Mnist(IdxDataset):
    """MNIST in IDX files; no default location."""


@register_dataset("fashion-mnist")
class FashionMnist(IdxDataset):
    """Fashion-MNIST in IDX files, by default where the Debian package puts them."""

    default_root = _FASHION_ROOT
    hint = (
        f", or install the Debian package dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist), which places them in {_FASHION_ROOT}"
    )


# --- balanced subsets -----------------------------------------------------------------


def balanced_indices(labels: torch.Tensor, n: int, num_classes: int = 10) -> torch.Tensor:
    """Select the class-balanced fixed subset: the n/num_classes lowest indices of each class.

    Args:
        labels: Integer labels of shape (N,).
        n: Subset size, a positive multiple of `num_classes`.
        num_classes: Number of classes (labels 0..num_classes-1).

    Returns:
        int64 tensor of n indices, sorted ascending.

    Raises:
        ValueError: If `n` is not a positive multiple of `num_classes` or labels are not 1-D.
        DataError: If a class has fewer than n/num_classes points.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if n < 1 or n % num_classes != 0:
        raise ValueError(f"n must be a positive multiple of num_classes={num_classes}, got {n}")
    per_class = n // num_classes
    chosen = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise DataError(
                f"class {c} has {len(idx)} points, but a balanced subset of {n} needs "
                f"{per_class} per class"
            )
        chosen.append(idx[:per_class])  # nonzero returns indices ascending
    return torch.sort(torch.cat(chosen)).values.to(torch.int64)


# --- CIFAR-10 / CIFAR-100 (python version) --------------------------------------------

# numpy's array-reconstruction function (numpy.core.multiarray._reconstruct in numpy 1,
# numpy._core.multiarray._reconstruct in numpy 2), taken from an array's own pickle recipe.
_NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes with protocol 2, restricted to latin-1."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in {
        "latin1",
        "latin-1",
    }:
        raise pickle.UnpicklingError(
            f"_codecs.encode is allowed only for latin-1 text, got {type(text).__name__} "
            f"and {encoding!r}"
        )
    return text.encode("latin-1")


# The only globals a CIFAR pickle may name: what rebuilds a numpy array (and bytes pickled by
# Python 3 with protocol 2). Anything else could run code when loaded.
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of `_PICKLE_GLOBALS`."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"pickle file {self._path}: refused to load, it names the global "
                f"{module}.{name}, which a CIFAR file never needs (only numpy array "
                f"reconstruction is allowed); the file is not an original CIFAR file"
            ) from None


def read_pickle(path: Path) -> Any:
    """Unpickle a python-2-era data file (bytes keys) allowing only numpy array globals.

    Args:
        path: The pickle file.

    Returns:
        The unpickled object.

    Raises:
        DataError: If the file cannot be read, is truncated or corrupt, or names any other
            global (which is refused before it is called).
    """
    try:
        with Path(path).open("rb") as file:
            return _RestrictedUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle can fail in many ways; all are data errors
        raise DataError(
            f"pickle file {path}: truncated or corrupt, cannot unpickle it "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _field(obj: dict, key: str, path: Path) -> Any:
    """obj[b"key"] (as the python-2-era files have it) or obj["key"]."""
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    found = ", ".join(repr(k) for k in list(obj)[:10])
    raise DataError(f"pickle file {path}: no entry {key.encode()!r}; found keys {found}")


@dataclass(frozen=True)
class _CifarFormat:
    title: str
    folder: str
    archive: str
    files: dict[str, tuple[str, ...]]
    meta: str
    label_key: str
    names_key: str
    classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class CifarDataset(Dataset):
    """CIFAR, the official python version: pickled batches of 32×32 RGB images.

    Each batch is a pickle of a dict with b"data" (uint8, one row of 3072 per image: the
    1024 red values, then green, then blue, each plane 32×32 row-major) and a list of labels.
    Inputs are normalised per channel after scaling to [0, 1].
    """

    splits = ("train", "test")
    eval_split = "test"
    image_size = 32
    fmt: ClassVar[_CifarFormat]

    @property
    def format_classes(self) -> int:  # type: ignore[override]
        """10 or 100, fixed by the format."""
        return self.fmt.classes

    def folder(self, root: Path) -> Path:
        """Return the batch folder: `root/<folder>`, or `root` itself if it holds the files."""
        root = Path(root)
        if _is_dir(root / self.fmt.folder):
            return root / self.fmt.folder
        names = [self.fmt.meta, *(n for split in self.fmt.files.values() for n in split)]
        if root.name == self.fmt.folder or any(_is_file(root / n) for n in names):
            return root
        return root / self.fmt.folder

    def files(self, root: Path) -> list[Path]:
        """Return the batch and meta files found."""
        folder = self.folder(root)
        names = [n for split in self.fmt.files.values() for n in split] + [self.fmt.meta]
        return [folder / n for n in names if _is_file(folder / n)]

    def expected(self, root: Path) -> str:
        """Say where the unpacked python version goes."""
        names = [n for split in self.fmt.files.values() for n in split] + [self.fmt.meta]
        return (
            f"place the {self.fmt.title} python version ({self.fmt.archive}, unpacked) so that "
            f"{Path(root) / self.fmt.folder} holds {', '.join(names[:-1])} and {names[-1]} "
            f"(a root naming that folder itself works too)"
        )

    def _path(self, root: Path, name: str) -> Path:
        path = self.folder(root) / name
        if not _is_file(path):
            raise DataError(f"{self.fmt.title} file {path} not found; {self.expected(root)}")
        return path

    def _read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        obj = read_pickle(path)
        what = f"{self.fmt.title} file {path}"
        if not isinstance(obj, dict):
            raise DataError(f"{what}: expected a pickled dict, found {type(obj).__name__}")
        data = _field(obj, "data", path)
        raw_labels = _field(obj, self.fmt.label_key, path)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            found = (
                f"{data.ndim}-D {data.dtype} array"
                if isinstance(data, np.ndarray)
                else type(data).__name__
            )
            raise DataError(f"{what}: b'data' must be a 2-D uint8 array, found a {found}")
        width = 3 * self.image_size**2
        if data.shape[1] != width:
            raise DataError(
                f"{what}: b'data' rows must hold {width} bytes (3 planes of "
                f"{self.image_size}×{self.image_size}), found width {data.shape[1]}"
            )
        try:
            labels = np.asarray(raw_labels)
        except Exception as exc:
            raise DataError(f"{what}: unreadable labels ({exc})") from exc
        key = self.fmt.label_key.encode()
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise DataError(
                f"{what}: {key!r} must be a list of integers, found {labels.ndim}-D {labels.dtype}"
            )
        labels = labels.astype(np.int64)
        if len(labels) != len(data):
            raise DataError(
                f"{what}: {len(data)} images in b'data' but {len(labels)} labels in {key!r}"
            )
        bad = np.flatnonzero((labels < 0) | (labels >= self.fmt.classes))
        if bad.size:
            raise DataError(
                f"{what}: mislabeled data, {key!r} must lie in 0..{self.fmt.classes - 1}, "
                f"found {labels[bad[0]]} at position {bad[0]} ({bad.size} such labels)"
            )
        return data, labels

    def _read_split(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        self.check_split(split)
        paths = [self._path(root, name) for name in self.fmt.files[split]]
        batches = [self._read_batch(path) for path in paths]
        return (
            np.concatenate([data for data, _ in batches]),
            np.concatenate([labels for _, labels in batches]),
        )

    def labels(self, root: Path, split: str) -> np.ndarray:
        """Return the labels of `split` (the batches are unpickled, no image is converted)."""
        return self._read_split(root, split)[1]

    def num_classes(self, root: Path) -> int:
        """Return the number of class names in the meta file (checked to be as published)."""
        path = self._path(root, self.fmt.meta)
        obj = read_pickle(path)
        if not isinstance(obj, dict):
            raise DataError(f"{self.fmt.title} file {path}: expected a pickled dict")
        names = _field(obj, self.fmt.names_key, path)
        if not isinstance(names, list | tuple) or len(names) != self.fmt.classes:
            count = len(names) if isinstance(names, list | tuple) else type(names).__name__
            raise DataError(
                f"{self.fmt.title} file {path}: {self.fmt.names_key.encode()!r} must list "
                f"{self.fmt.classes} class names, found {count}"
            )
        return len(names)

    def _check_size(self, image_size: int | None) -> None:
        _check_image_size(
            image_size, lambda s: s == self.image_size, self.name, f"None or {self.image_size}"
        )

    def input_shape(self, image_size: int | None) -> tuple[int, int, int]:
        """Return (3, 32, 32)."""
        self._check_size(image_size)
        return (3, self.image_size, self.image_size)

    def load(
        self,
        root: Path,
        split: str,
        indices: IndexLike | None = None,
        image_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Load (part of) a split: x (n, 3, 32, 32) normalised per channel, y (n,)."""
        self._check_size(image_size)
        data, labels = self._read_split(root, split)
        idx = _as_indices(indices, len(labels), f"split {split!r} of {self.name}")
        if idx is not None:
            data, labels = data[idx], labels[idx]
        size = self.image_size
        x = _normalise(data.reshape(len(data), 3, size, size), self.fmt.mean, self.fmt.std)
        return x, torch.from_numpy(labels)


@register_dataset("cifar10")
class Cifar10(CifarDataset):
    """CIFAR-10: 50000 training and 10000 test images of 10 classes."""

    fmt = _CifarFormat(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        files={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )


@register_dataset("cifar100")
class Cifar100(CifarDataset):
    """CIFAR-100 with its 100 fine labels: 50000 training and 10000 test images."""

    fmt = _CifarFormat(
        title="CIFAR-100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        files={"train": ("train",), "test": ("test",)},
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    )


# --- ImageNet (ILSVRC-2012, class-per-folder JPEG tree) -------------------------------

_JPEG_SUFFIXES = (".jpeg", ".jpg")


def _scan(folder: Path, what: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, JPEG file names) of a folder, each sorted; hidden entries skipped."""
    dirs, jpegs = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    dirs.append(entry.name)
                elif entry.name.lower().endswith(_JPEG_SUFFIXES):
                    jpegs.append(entry.name)
    except OSError as exc:
        raise DataError(f"cannot list {what} {folder}: {exc}") from exc
    return sorted(dirs), sorted(jpegs)


@dataclass(frozen=True)
class _Listing:
    """The images of one split: file i is folder / classes[labels[i]] / names[i]."""

    folder: Path
    classes: tuple[str, ...]
    labels: np.ndarray  # int64
    names: np.ndarray  # fixed-width bytes (os.fsencode of the file names): compact

    def path(self, i: int) -> Path:
        return self.folder / self.classes[self.labels[i]] / os.fsdecode(self.names[i])


class ImageFolderDataset(Dataset):
    """Class-per-folder JPEG trees `root/<split>/<class>/*.JPEG`, read lazily.

    Classes are the sorted folder names of the first split ("train"), labelled in that order;
    files are sorted within a class. A class folder of another split must be one of the
    training classes. The listing is made once per (root, split) and kept in memory; `load`
    decodes only the requested images: convert to RGB, resize the shorter side to
    round(image_size · 256 / 224) (bilinear), center-crop image_size, normalise per channel.
    """

    splits = ("train", "val")
    eval_split = "val"
    default_image_size: ClassVar[int] = 224
    mean: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)
    title: ClassVar[str] = "image folder"

    def __init__(self) -> None:
        self._listings: dict[tuple[Path, str], _Listing] = {}

    def files(self, root: Path) -> list[Path]:
        """Return the split folders (e.g. train/ and val/) that exist."""
        return [Path(root) / split for split in self.splits if _is_dir(Path(root) / split)]

    def expected(self, root: Path) -> str:
        """Say how the JPEG trees must be laid out."""
        root = Path(root)
        first, *others = self.splits
        rest = " and ".join(f"{root / s}/<class>/*.JPEG" for s in others)
        unsorted = " and ".join(f"{s}/" for s in others)
        return (
            f"place {self.title} as class-per-folder JPEG trees: {root / first}/<class>/*.JPEG "
            f"(one folder per class, e.g. {first}/n01440764/n01440764_10026.JPEG) and {rest}, "
            f"with the {unsorted} images already sorted into folders named like the "
            f"{first}/ class folders, not lying flat in {unsorted}"
        )

    def _split_folder(self, root: Path, split: str) -> Path:
        folder = Path(root) / split
        if not _is_dir(folder):
            raise DataError(f"{self.title} folder {folder} not found; {self.expected(Path(root))}")
        return folder

    def classes(self, root: Path) -> tuple[str, ...]:
        """Return the class names: the sorted folder names of the first split's folder.

        Raises:
            DataError: If that folder is missing, holds images directly or has no class
                folder.
        """
        first = self.splits[0]
        folder = self._split_folder(root, first)
        dirs, jpegs = _scan(folder, f"{self.title} folder")
        if jpegs:
            raise DataError(
                f"{self.title} folder {folder} holds images directly (e.g. {folder / jpegs[0]}); "
                f"{self.expected(Path(root))}"
            )
        if not dirs:
            raise DataError(
                f"{self.title} folder {folder} has no class folders; {self.expected(Path(root))}"
            )
        return tuple(dirs)

    def listing(self, root: Path, split: str) -> _Listing:
        """Return the (cached) listing of a split's images and labels."""
        self.check_split(split)
        key = (Path(os.path.abspath(root)), split)
        if key not in self._listings:
            self._listings[key] = self._list(Path(root), split)
        return self._listings[key]

    def _list(self, root: Path, split: str) -> _Listing:
        classes = self.classes(root)
        folder = self._split_folder(root, split)
        if split == self.splits[0]:
            dirs = list(classes)
        else:
            dirs, jpegs = _scan(folder, f"{self.title} folder")
            if jpegs:
                raise DataError(
                    f"{self.title} folder {folder} holds images directly (e.g. "
                    f"{folder / jpegs[0]}): they are not sorted into class folders; "
                    f"{self.expected(root)}"
                )
            if not dirs:
                raise DataError(
                    f"{self.title} folder {folder} has no class folders; {self.expected(root)}"
                )
            known = set(classes)
            unknown = [d for d in dirs if d not in known]
            if unknown:
                raise DataError(
                    f"mislabeled {self.title} data: class folder {folder / unknown[0]} is not "
                    f"one of the {len(classes)} classes of {root / self.splits[0]}"
                    + (f" ({len(unknown)} such folders)" if len(unknown) > 1 else "")
                )
        label_of = {name: i for i, name in enumerate(classes)}
        labels: list[np.ndarray] = []
        names: list[bytes] = []
        for d in dirs:
            _, jpegs = _scan(folder / d, f"{self.title} class folder")
            if not jpegs:
                raise DataError(
                    f"{self.title} class folder {folder / d} holds no JPEG files (*.JPEG); "
                    f"{self.expected(root)}"
                )
            labels.append(np.full(len(jpegs), label_of[d], dtype=np.int64))
            names.extend(os.fsencode(name) for name in jpegs)
        return _Listing(folder, classes, np.concatenate(labels), np.array(names))

    def labels(self, root: Path, split: str) -> np.ndarray:
        """Return the labels of `split` from the folder listing."""
        return self.listing(root, split).labels.copy()

    def num_classes(self, root: Path) -> int:
        """Return the number of class folders of the first split."""
        return len(self.classes(root))

    def _size(self, image_size: int | None) -> int:
        _check_image_size(image_size, lambda s: s >= 1, self.name, "None or a positive integer")
        return self.default_image_size if image_size is None else int(image_size)

    def input_shape(self, image_size: int | None) -> tuple[int, int, int]:
        """Return (3, s, s), s = image_size or 224."""
        size = self._size(image_size)
        return (3, size, size)

    def decode(self, path: Path, size: int) -> np.ndarray:
        """Decode one image to uint8 (3, size, size): RGB, shorter side resized, center crop.

        Raises:
            DataError: If the file is missing, truncated or corrupt.
        """
        from PIL import Image

        resize_to = round(size * 256 / 224)
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
            w, h = rgb.size
            # as torchvision's Resize(int): the longer side truncated, not rounded
            if w <= h:
                new_w, new_h = resize_to, int(resize_to * h / w)
            else:
                new_w, new_h = int(resize_to * w / h), resize_to
            rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = round((new_w - size) / 2), round((new_h - size) / 2)
            pixels = np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)
        except Exception as exc:  # PIL fails in many ways on bad files; all are data errors
            raise DataError(
                f"{self.title} image {path}: cannot decode it, truncated or corrupt "
                f"({type(exc).__name__}: {exc}); replace the file"
            ) from exc
        return pixels.transpose(2, 0, 1)

    def load(
        self,
        root: Path,
        split: str,
        indices: IndexLike | None = None,
        image_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Load (part of) a split, decoding only the requested images."""
        size = self._size(image_size)
        listing = self.listing(root, split)
        idx = _as_indices(indices, len(listing.labels), f"split {split!r} of {self.name}")
        if idx is None:
            idx = np.arange(len(listing.labels))
        pixels = np.empty((len(idx), 3, size, size), dtype=np.uint8)
        for row, i in enumerate(idx):
            pixels[row] = self.decode(listing.path(int(i)), size)
        x = _normalise(pixels, self.mean, self.std)
        return x, torch.from_numpy(listing.labels[idx].copy())


@register_dataset("imagenet")
class ImageNet(ImageFolderDataset):
    """ILSVRC-2012: `root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG`."""

    title = "ImageNet"


# --- augmentation ---------------------------------------------------------------------


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image (CIFAR training).

    Each image is padded by `pad` zeros on every side, cropped back to its size at an offset
    drawn uniformly from 0..2·pad in each direction, and mirrored left-right with probability
    1/2. The zeros are added to `x` as given, so for normalised inputs the border is the
    per-channel mean. All randomness comes from `generator` (n offsets pairs, then n flips),
    so a seeded generator gives the same batch every time.

    Args:
        x: Images of shape (n, C, H, W).
        generator: Source of randomness; on the CPU or on x's device.
        pad: Padding (maximal shift) in pixels, >= 0.

    Returns:
        A new tensor of x's shape, dtype and device.

    Raises:
        ValueError: If `x` is not 4-D or `pad` is negative.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, C, H, W), got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    n, c, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=generator.device) == 1
    shifts, flips = shifts.to(x.device), flips.to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = shifts[:, :1] + torch.arange(h, device=x.device)  # (n, h)
    cols = shifts[:, 1:] + torch.arange(w, device=x.device)  # (n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
