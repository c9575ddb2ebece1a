"""Small data sets in the real MNIST IDX format, written by the tests themselves.

Also a command: ``python tests/idx_files.py ROOT`` writes a tiny class-structured
MNIST-like data set (the one the workflow tests use) under ROOT.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from hessketch.data import IDX_FILES

_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the real IDX format (big-endian header and data)."""
    header = struct.pack(">BBBB", 0, 0, _CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    image_stem, label_stem = IDX_FILES[split]
    suffix = ".gz" if gz else ""
    write_idx(root / (image_stem + suffix), images, gz)
    write_idx(root / (label_stem + suffix), labels, gz)


def write_fake_mnist(root: Path, n_train: int = 500, n_test: int = 200, seed: int = 0) -> Path:
    """A learnable 28×28, 10-class data set: a fixed random template per class plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, size=(10, 28, 28))
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) * 7 + 3) % 10  # every class, not in order
        noise = rng.normal(0, 60, size=(n, 28, 28))
        images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
        write_split(root, split, images, labels.astype(np.uint8), gz=split == "train")
    return root


if __name__ == "__main__":
    print(write_fake_mnist(Path(sys.argv[1])))
