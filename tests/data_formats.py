"""Tiny data sets in the real CIFAR (python version) and ImageNet (JPEG tree) formats.

CIFAR batches are pickles (protocol 2) of dicts with bytes keys and uint8 numpy arrays, as
the originals. With ``py2=True`` they are written the way Python 2 wrote the originals: byte
and text strings as Python 2 ``str`` (BINSTRING opcodes) and numpy's reconstruction function
under its numpy-1 name ``numpy.core.multiarray._reconstruct``; with ``py2=False`` as Python 3's
``pickle.dump(..., protocol=2)`` writes them (bytes via ``_codecs.encode``).
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_RECONSTRUCT = np.zeros(0).__reduce__()[0]


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 str, and numpy's _reconstruct under its numpy-1 name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def pickle_bytes(obj: Any, py2: bool = True) -> bytes:
    """Pickle with protocol 2, Python-2 style (as the CIFAR originals) or Python-3 style."""
    if not py2:
        return pickle.dumps(obj, protocol=2)
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_pickle(path: Path, obj: Any, py2: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle_bytes(obj, py2))
    return path


def cifar_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """n random CIFAR rows: uint8 (n, 3072), 1024 R values, then G, then B."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(
    root: Path, n: int = 4, seed: int = 0, py2: bool = True
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write ``root/cifar-10-batches-py`` with 5 training batches and a test batch of n images.

    Returns:
        File name -> (data, labels) of each batch written.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    batches: dict[str, tuple[np.ndarray, list[int]]] = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        data = cifar_images(n, rng)
        labels = [int(v) for v in (np.arange(n) + 3 * b) % 10]
        batch = {
            b"batch_label": f"{name} of 6".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(n)],
        }
        write_pickle(folder / name, batch, py2)
        batches[name] = (data, labels)
    meta = {
        b"num_cases_per_batch": n,
        b"label_names": [f"class{i}".encode() for i in range(10)],
        b"num_vis": 3072,
    }
    write_pickle(folder / "batches.meta", meta, py2)
    return batches


def write_cifar100(
    root: Path, n_train: int = 6, n_test: int = 4, seed: int = 0, py2: bool = True
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write ``root/cifar-100-python`` with ``train``, ``test`` and ``meta``.

    Returns:
        File name -> (data, fine labels) of each split written.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    splits: dict[str, tuple[np.ndarray, list[int]]] = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = cifar_images(n, rng)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        batch = {
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{name} batch".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [v // 5 for v in fine],
            b"data": data,
        }
        write_pickle(folder / name, batch, py2)
        splits[name] = (data, fine)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    write_pickle(folder / "meta", meta, py2)
    return splits


# (width, height, mode) of the images of each class folder, in file order: non-square both
# ways, square, and one grayscale image (the reader must convert it to RGB).
IMAGE_SHAPES = [(40, 50, "RGB"), (50, 40, "RGB"), (45, 45, "L")]


def write_jpeg(path: Path, pixels: np.ndarray, quality: int = 90) -> Path:
    """Write a real JPEG of an (h, w) grey or (h, w, 3) RGB uint8 array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=quality)
    return path


def write_imagenet(
    root: Path,
    classes: tuple[str, ...] = ("n01440764", "n01443537", "n01484850"),
    val_classes: tuple[str, ...] | None = None,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Write an ILSVRC-2012-like JPEG tree: ``root/{train,val}/<wnid>/*.JPEG``, 3 per class.

    Args:
        root: The data root.
        classes: The training class folders.
        val_classes: The validation class folders; None for the same as training.
        seed: Seed of the random pixels.

    Returns:
        Split -> the paths written, in the reader's order (class folders sorted, files
        sorted within a class).
    """
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for split, folders in (("train", classes), ("val", val_classes or classes)):
        paths = []
        for c, wnid in enumerate(sorted(folders)):
            for i, (w, h, mode) in enumerate(IMAGE_SHAPES):
                shape = (h, w) if mode == "L" else (h, w, 3)
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                name = (
                    f"{wnid}_{i}.JPEG"
                    if split == "train"
                    else f"ILSVRC2012_val_{c * 10 + i:08d}.JPEG"
                )
                paths.append(write_jpeg(root / split / wnid / name, pixels))
        written[split] = paths
    return written
