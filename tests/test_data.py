from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from idx_files import idx_bytes, write_idx, write_split

from hessketch.data import (
    DATASETS,
    area_downsample,
    area_matrix,
    balanced_indices,
    default_root,
    find_idx_file,
    load_idx_split,
    read_idx,
)
from hessketch.errors import DataError

# --- read_idx -------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.linspace(-1.5, 2.5, 10, dtype=np.float32).reshape(5, 2),
        np.array([1e-300, -2.0, 3.25]),
        np.array([[-7, 300], [32000, -32000]], dtype=np.int16),
        np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        np.array([-128, 127], dtype=np.int8),
    ],
)
def test_read_idx_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = write_idx(tmp_path / "data", array, gz)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # result must be writable


def test_read_idx_detects_gzip_by_content(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8)
    # gzipped content under a plain name, plain content under a .gz name
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b.gz", array)), array)


def _corrupt_cases() -> dict[str, bytes]:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    return {
        "bad-magic": b"\x01\x00" + good[2:],
        "unknown-type": good[:2] + b"\x0a" + good[3:],
        "truncated-data": good[:-1],
        "trailing-bytes": good + b"\x00",
        "truncated-header": good[:9],
        "empty": b"",
        "corrupt-gzip": gzip.compress(good)[:-6],
        "garbage-gzip": b"\x1f\x8b" + b"\x00" * 20,
    }


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("bad-magic", "magic"),
        ("unknown-type", "0x0A"),
        ("truncated-data", "expected 12 data bytes"),
        ("trailing-bytes", "found 13"),
        ("truncated-header", "header"),
        ("empty", "magic"),
        ("corrupt-gzip", "gzip"),
        ("garbage-gzip", "gzip"),
    ],
)
def test_read_idx_corrupt(tmp_path: Path, case: str, needle: str) -> None:
    path = tmp_path / f"{case}-idx2-ubyte"
    path.write_bytes(_corrupt_cases()[case])
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert path.name in str(info.value)
    assert needle in str(info.value)


def test_read_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="directory"):
        read_idx(tmp_path)


# --- find_idx_file / registry ---------------------------------------------------------


def test_find_idx_file(tmp_path: Path) -> None:
    array = np.zeros(3, dtype=np.uint8)
    write_idx(tmp_path / "x-idx1-ubyte.gz", array, gz=True)
    assert find_idx_file(tmp_path, "x-idx1-ubyte") == tmp_path / "x-idx1-ubyte.gz"
    write_idx(tmp_path / "x-idx1-ubyte", array)
    assert find_idx_file(str(tmp_path), "x-idx1-ubyte") == tmp_path / "x-idx1-ubyte"


def test_find_idx_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        find_idx_file(tmp_path, "y-idx1-ubyte")
    msg = str(info.value)
    assert str(tmp_path / "y-idx1-ubyte") in msg
    assert str(tmp_path / "y-idx1-ubyte.gz") in msg
    assert "does not exist" not in msg
    with pytest.raises(DataError, match="does not exist"):
        find_idx_file(tmp_path / "no-such-root", "y-idx1-ubyte")


def test_registry_and_fashion_hint() -> None:
    assert set(DATASETS) == {"fashion-mnist", "mnist"}
    assert default_root("fashion-mnist") == Path("/usr/share/datasets/fashion-mnist")
    assert default_root("mnist") is None
    with pytest.raises(ValueError, match="cifar"):
        default_root("cifar")
    with pytest.raises(DataError) as info:
        find_idx_file(default_root("fashion-mnist"), "no-such-file-idx1-ubyte")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "data.root" in msg


# --- area downsampling ----------------------------------------------------------------


@pytest.mark.parametrize(("n_in", "n_out"), [(28, 16), (28, 14), (28, 28), (7, 3), (5, 1)])
def test_area_matrix_rows_sum_to_one(n_in: int, n_out: int) -> None:
    a = area_matrix(n_in, n_out)
    assert a.shape == (n_out, n_in)
    assert torch.all(a >= 0)
    torch.testing.assert_close(a.sum(1), torch.ones(n_out, dtype=a.dtype), atol=1e-12, rtol=0)
    # every input pixel is fully distributed: columns sum to n_out / n_in
    torch.testing.assert_close(
        a.sum(0), torch.full((n_in,), n_out / n_in, dtype=a.dtype), atol=1e-12, rtol=0
    )


def test_area_matrix_3_to_2() -> None:
    # boxes of length 1.5: [0, 1.5) and [1.5, 3)
    expected = torch.tensor([[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]], dtype=torch.float64)
    torch.testing.assert_close(area_matrix(3, 2), expected, atol=1e-15, rtol=0)


def test_area_downsample_3_to_2_by_hand() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], dtype=torch.float64)
    # row/column weights (2/3, 1/3, 0) and (0, 1/3, 2/3); e.g. top-left
    # = (4·1 + 2·2 + 2·4 + 1·5) / 9 = 21/9, bottom-right = (1·5 + 2·6 + 2·8 + 4·9) / 9 = 69/9
    expected = torch.tensor([[[21.0, 33.0], [57.0, 69.0]]], dtype=torch.float64) / 9
    torch.testing.assert_close(area_downsample(x, 2), expected, atol=1e-12, rtol=0)


def test_area_downsample_constant() -> None:
    x = torch.full((2, 28, 28), 0.37, dtype=torch.float64)
    for size in (1, 5, 14, 16, 27):
        torch.testing.assert_close(
            area_downsample(x, size), torch.full((2, size, size), 0.37, dtype=torch.float64)
        )


def test_area_downsample_28_to_14_block_means() -> None:
    # integer pixel values: block means are exact whatever the summation order
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 28, 28), generator=g).to(torch.float32)
    blocks = x.reshape(3, 14, 2, 14, 2).mean(dim=(2, 4))
    assert torch.equal(area_downsample(x, 14), blocks)


def test_area_downsample_28_to_16_preserves_mean() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 28, 28, generator=g, dtype=torch.float64)
    out = area_downsample(x, 16)
    assert out.shape == (4, 16, 16)
    torch.testing.assert_close(out.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-6, rtol=0)


def test_area_downsample_identity_and_errors() -> None:
    x = torch.rand(2, 6, 6)
    assert area_downsample(x, 6) is x
    with pytest.raises(ValueError, match="size"):
        area_downsample(x, 7)
    with pytest.raises(ValueError, match="size"):
        area_downsample(torch.rand(2, 6, 4), 5)
    with pytest.raises(ValueError, match="shape"):
        area_downsample(torch.rand(6, 6), 3)


# --- load_idx_split -------------------------------------------------------------------


def _fake_split(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0] = 255  # make sure the extremes are present
    images[1] = 0
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_split(tmp_path: Path, gz: bool) -> None:
    images, labels = _fake_split()
    write_split(tmp_path, "test", images, labels, gz)
    x, y = load_idx_split(tmp_path, "test")
    assert x.shape == (20, 784) and x.dtype == torch.float32
    assert y.shape == (20,) and y.dtype == torch.int64
    torch.testing.assert_close(x, torch.from_numpy(images).reshape(20, -1).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())

    x16, y16 = load_idx_split(tmp_path, "test", image_size=16)
    assert x16.shape == (20, 256) and x16.dtype == torch.float32
    assert float(x16.min()) >= 0.0 and float(x16.max()) <= 1.0
    assert torch.all(x16[0] == 1.0) and torch.all(x16[1] == 0.0)
    torch.testing.assert_close(x16.mean(1), x.mean(1), atol=1e-5, rtol=0)
    assert torch.equal(y16, y)


def test_load_idx_split_errors(tmp_path: Path) -> None:
    images, labels = _fake_split()
    with pytest.raises(ValueError, match="split"):
        load_idx_split(tmp_path, "valid")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_idx_split(tmp_path, "train")

    write_split(tmp_path / "count", "train", images, labels[:-1], gz=False)
    with pytest.raises(DataError) as info:
        load_idx_split(tmp_path / "count", "train")
    msg = str(info.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert "20 images" in msg and "19 labels" in msg

    bad = labels.copy()
    bad[3] = 10
    write_split(tmp_path / "range", "test", images, bad, gz=True)
    with pytest.raises(DataError) as info:
        load_idx_split(tmp_path / "range", "test")
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "0..9" in msg

    write_split(tmp_path / "float", "test", images.astype(np.float32), labels, gz=False)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_idx_split(tmp_path / "float", "test")


# --- balanced_indices -----------------------------------------------------------------


def test_balanced_indices_by_hand() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2, 2])
    # class 0 at 1, 3, 7; class 1 at 2, 5, 6; class 2 at 0, 4, 8, 9
    idx = balanced_indices(labels, 6, num_classes=3)
    assert idx.dtype == torch.int64
    assert idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert balanced_indices(labels, 3, num_classes=3).tolist() == [0, 1, 2]
    assert balanced_indices(labels, 9, num_classes=3).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_balanced_indices_errors() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2, 2])
    with pytest.raises(ValueError, match="multiple"):
        balanced_indices(labels, 7, num_classes=3)
    with pytest.raises(DataError) as info:
        balanced_indices(labels, 12, num_classes=3)
    msg = str(info.value)
    assert "class 0" in msg and "3 points" in msg and "4 per class" in msg


_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not _FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split() -> None:
    x, y = load_idx_split(_FASHION, "test", image_size=16)
    assert x.shape == (10000, 256) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 1000))
    idx = balanced_indices(y, 100)
    assert len(idx) == 100 and torch.equal(torch.bincount(y[idx]), torch.full((10,), 10))
