"""MNIST-style IDX data: file reading, exact area downsampling and balanced subsets.

No torchvision: the IDX format is simple enough to read directly, and reading it here keeps
every failure a `DataError` that names the file at fault.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from hessketch.errors import DataError

IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Side length of the images stored in MNIST-style IDX files.
IDX_IMAGE_SIZE = 28

# Dataset name -> default data root (None: no default, `data.root` must be set).
DATASETS: dict[str, Path | None] = {
    # Location used by the Debian package dataset-fashion-mnist.
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": None,
}

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


def default_root(name: str) -> Path | None:
    """Return the default data root of a registered dataset.

    Args:
        name: Dataset name, a key of `DATASETS`.

    Returns:
        The default root folder, or None when the dataset has no default location.

    Raises:
        ValueError: If `name` is not a registered dataset.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name]


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
    hint = _FASHION_HINT if root == DATASETS["fashion-mnist"] else _GENERIC_HINT
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
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"IDX file {image_path}: expected 3-D unsigned byte images, "
            f"found {images.ndim}-D {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"IDX file {label_path}: expected 1-D integer labels, "
            f"found {labels.ndim}-D {labels.dtype}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"IDX files {image_path} and {label_path} disagree: "
            f"{len(images)} images but {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"IDX file {label_path} (labels for {image_path}): expected labels in 0..9, "
            f"found range {labels.min()}..{labels.max()}"
        )
    x = torch.from_numpy(images).to(torch.float32) / 255.0
    if image_size is not None:
        # Float32 rounding in the weights can overshoot 1 by an ulp; keep the promised range.
        x = area_downsample(x, image_size).clamp_(0.0, 1.0)
    y = torch.from_numpy(labels).to(torch.int64)
    return x.reshape(len(x), -1), y


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
