from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_formats import (
    IMAGE_SHAPES,
    pickle_bytes,
    write_cifar10,
    write_cifar100,
    write_imagenet,
    write_jpeg,
    write_pickle,
)
from idx_files import idx_bytes, write_idx, write_split
from PIL import Image

from hessketch import data
from hessketch.data import (
    DATASETS,
    Dataset,
    IdxDataset,
    ImageSizeError,
    area_downsample,
    area_matrix,
    augment_batch,
    balanced_indices,
    default_root,
    find_idx_file,
    get_dataset,
    load_idx_split,
    read_idx,
    register_dataset,
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
    assert set(DATASETS) == {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagenet"}
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


# --- data set registry ----------------------------------------------------------------


def test_registry_entries() -> None:
    for name in DATASETS:
        dataset = get_dataset(name)
        assert isinstance(dataset, Dataset) and dataset.name == name
        assert dataset.eval_split in dataset.splits
        assert default_root(name) == dataset.default_root
    assert get_dataset("imagenet").splits == ("train", "val")
    assert get_dataset("imagenet").eval_split == "val"
    assert get_dataset("cifar10").splits == ("train", "test")
    assert default_root("cifar10") is None and default_root("imagenet") is None
    with pytest.raises(ValueError) as info:
        get_dataset("svhn")
    assert "svhn" in str(info.value) and "cifar100" in str(info.value)


def test_register_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "DATASETS", dict(DATASETS))

    @register_dataset("kmnist")
    class Kmnist(IdxDataset):
        pass

    assert isinstance(data.DATASETS["kmnist"], Kmnist)
    assert data.get_dataset("kmnist").name == "kmnist"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("kmnist")(Kmnist)

    class Incomplete(Dataset):
        pass

    with pytest.raises(TypeError):
        register_dataset("incomplete")(Incomplete)
    with pytest.raises(TypeError):
        register_dataset("not-a-class")(int)  # type: ignore[arg-type]

    class BadEval(IdxDataset):
        eval_split = "val"

    with pytest.raises(ValueError, match="eval_split"):
        register_dataset("bad-eval")(BadEval)
    assert "incomplete" not in data.DATASETS and "bad-eval" not in data.DATASETS


# --- IDX readers ----------------------------------------------------------------------


def _write_fake_idx(root: Path, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _fake_split()
    write_split(root, "train", images, labels, gz)
    write_split(root, "test", images[::-1].copy(), labels[::-1].copy(), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset_matches_load_idx_split(tmp_path: Path, gz: bool) -> None:
    _, labels = _write_fake_idx(tmp_path, gz)
    dataset = get_dataset("mnist")
    for image_size, side in ((None, 28), (16, 16), (28, 28), (7, 7)):
        x, y = dataset.load(tmp_path, "train", image_size=image_size)
        assert x.shape == (20, 1, side, side) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        x_old, y_old = load_idx_split(tmp_path, "train", image_size)
        assert torch.equal(x.reshape(20, -1), x_old)  # bit-identical
        assert torch.equal(y, y_old)
        assert dataset.input_shape(image_size) == (1, side, side)

        idx = [5, 0, 19, 5]
        xs, ys = dataset.load(tmp_path, "train", indices=idx, image_size=image_size)
        assert torch.equal(xs, x[idx]) and torch.equal(ys, y[idx])
        xs, ys = dataset.load(tmp_path, "train", indices=torch.tensor(idx), image_size=image_size)
        assert torch.equal(xs, x[idx])
    xs, ys = dataset.load(tmp_path, "test", indices=np.zeros(0, dtype=np.int64), image_size=16)
    assert xs.shape == (0, 1, 16, 16) and ys.shape == (0,)

    np.testing.assert_array_equal(dataset.labels(tmp_path, "test"), labels[::-1])
    assert dataset.labels(tmp_path, "test").dtype == np.int64
    assert dataset.num_classes(tmp_path) == 10
    suffix = ".gz" if gz else ""
    assert dataset.files(tmp_path) == [
        tmp_path / (stem + suffix) for stems in data.IDX_FILES.values() for stem in stems
    ]
    assert dataset.files(tmp_path / "missing") == []


def test_idx_dataset_errors(tmp_path: Path) -> None:
    images, labels = _fake_split()
    dataset = get_dataset("mnist")
    write_split(tmp_path, "train", images, labels, gz=False)

    with pytest.raises(DataError) as info:
        dataset.load(tmp_path, "test")
    msg = str(info.value)
    assert str(tmp_path / "t10k-images-idx3-ubyte") in msg
    assert "place the IDX files" in msg and "t10k-labels-idx1-ubyte" in msg
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        dataset.labels(tmp_path, "test")
    assert "apt-get install dataset-fashion-mnist" in get_dataset("fashion-mnist").expected(
        tmp_path
    )

    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        dataset.load(tmp_path, "val")
    for bad in (29, 0, 16.0, True):
        with pytest.raises(ImageSizeError, match=r"1..28"):
            dataset.load(tmp_path, "train", image_size=bad)
        with pytest.raises(ValueError):  # an ImageSizeError is a ValueError too
            dataset.input_shape(bad)
    with pytest.raises(IndexError, match="20"):
        dataset.load(tmp_path, "train", indices=[0, 20])
    with pytest.raises(IndexError):
        dataset.load(tmp_path, "train", indices=[-1])
    with pytest.raises(ValueError, match="integers"):
        dataset.load(tmp_path, "train", indices=[0.5])
    with pytest.raises(ValueError, match="1-D"):
        dataset.load(tmp_path, "train", indices=[[0, 1]])

    bad = labels.copy()
    bad[7] = 10
    write_split(tmp_path / "mislabeled", "train", images, bad, gz=True)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*0..9"):
        dataset.num_classes(tmp_path / "mislabeled")

    write_split(tmp_path / "small", "train", images[:, :20, :20].copy(), labels, gz=False)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*28×28"):
        dataset.load(tmp_path / "small", "train")


@pytest.mark.skipif(not _FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_registry_matches() -> None:
    dataset = get_dataset("fashion-mnist")
    x_old, y_old = load_idx_split(_FASHION, "test", image_size=16)
    idx = balanced_indices(y_old, 500)
    x, y = dataset.load(dataset.resolve_root(None), "test", indices=idx, image_size=16)
    assert torch.equal(x.reshape(len(x), -1), x_old[idx]) and torch.equal(y, y_old[idx])
    assert dataset.num_classes(_FASHION) == 10


# --- CIFAR ----------------------------------------------------------------------------


def _expected_value(raw: int, mean: float, std: float) -> float:
    return float((np.float32(raw) / np.float32(255.0) - np.float32(mean)) / np.float32(std))


@pytest.mark.parametrize("py2", [True, False])
def test_cifar10_load(tmp_path: Path, py2: bool) -> None:
    batches = write_cifar10(tmp_path, n=4, py2=py2)
    dataset = get_dataset("cifar10")
    x, y = dataset.load(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert y.tolist() == [label for _, labels in train for label in labels]
    np.testing.assert_array_equal(dataset.labels(tmp_path, "train"), y.numpy())

    # image 1 of data_batch_2 (position 5), blue plane, row 5, column 7
    raw = int(train[1][0][1, 2 * 1024 + 5 * 32 + 7])
    assert x[5, 2, 5, 7].item() == pytest.approx(_expected_value(raw, 0.4465, 0.2616), abs=1e-6)
    # every pixel: rows are the R, G, B planes in turn, each 32×32 row-major
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    pixels = np.concatenate([d for d, _ in train]).reshape(20, 3, 32, 32)
    torch.testing.assert_close(x * std + mean, torch.from_numpy(pixels) / 255.0, atol=1e-6, rtol=0)

    xt, yt = dataset.load(tmp_path / "cifar-10-batches-py", "test", indices=[3, 0], image_size=32)
    assert yt.tolist() == [batches["test_batch"][1][3], batches["test_batch"][1][0]]
    x_test, _ = dataset.load(tmp_path, "test")
    assert torch.equal(xt, x_test[[3, 0]])
    assert dataset.num_classes(tmp_path) == 10
    assert dataset.input_shape(None) == (3, 32, 32)
    assert len(dataset.files(tmp_path)) == 7 and dataset.files(tmp_path / "nowhere") == []


def test_cifar_red_plane_first(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n=2)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, :1024] = 255  # red plane only
    row[0, 1024 + 33] = 51  # green, row 1, column 1
    batch = {b"batch_label": b"t", b"labels": [4], b"data": row, b"filenames": [b"a.png"]}
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    x, y = get_dataset("cifar10").load(tmp_path, "test")
    assert y.tolist() == [4]
    assert torch.all(x[0, 0] == x[0, 0, 0, 0])
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.4914) / 0.2470, abs=1e-6)
    assert x[0, 1, 1, 1].item() == pytest.approx((0.2 - 0.4822) / 0.2435, abs=1e-6)
    assert (x[0, 1] == x[0, 1, 0, 0]).sum() == 1023
    assert torch.all(x[0, 2] == x[0, 2, 0, 0])
    assert x[0, 2, 0, 0].item() == pytest.approx(-0.4465 / 0.2616, abs=1e-6)


def test_cifar100_load(tmp_path: Path) -> None:
    splits = write_cifar100(tmp_path, n_train=6, n_test=4)
    dataset = get_dataset("cifar100")
    x, y = dataset.load(tmp_path, "train", indices=[2, 5])
    assert x.shape == (2, 3, 32, 32)
    data_train, fine = splits["train"]
    assert y.tolist() == [fine[2], fine[5]]
    raw = int(data_train[5, 1024 + 31])  # green, row 0, column 31
    assert x[1, 1, 0, 31].item() == pytest.approx(_expected_value(raw, 0.4865, 0.2564), abs=1e-6)
    assert dataset.labels(tmp_path, "test").tolist() == splits["test"][1]
    assert dataset.num_classes(tmp_path) == 100
    assert dataset.load(tmp_path / "cifar-100-python", "test")[0].shape == (4, 3, 32, 32)


def _cifar10_case(folder: Path, case: str) -> Path:
    """Damage the CIFAR-10 files in one way; return the file at fault."""
    path = folder / "data_batch_2"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    if case == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "missing":
        path = folder / "data_batch_3"
        path.unlink()
    elif case == "mislabeled":
        batch[b"labels"][1] = 10
        write_pickle(path, batch)
    elif case == "length":
        batch[b"labels"] = batch[b"labels"][:-1]
        write_pickle(path, batch)
    elif case == "width":
        batch[b"data"] = batch[b"data"][:, :3000].copy()
        write_pickle(path, batch)
    elif case == "dtype":
        batch[b"data"] = batch[b"data"].astype(np.int64)
        write_pickle(path, batch)
    elif case == "no-labels":
        del batch[b"labels"]
        write_pickle(path, batch)
    elif case == "not-a-dict":
        write_pickle(path, [batch[b"data"], batch[b"labels"]])
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("truncated", "truncated or corrupt"),
        ("missing", "not found; place the CIFAR-10 python version"),
        ("mislabeled", "mislabeled data.*0..9, found 10 at position 1"),
        ("length", "4 images in b'data' but 3 labels"),
        ("width", "3072 bytes.*found width 3000"),
        ("dtype", "2-D uint8 array"),
        ("no-labels", "no entry b'labels'"),
        ("not-a-dict", "expected a pickled dict, found list"),
    ],
)
def test_cifar10_damaged(tmp_path: Path, case: str, needle: str) -> None:
    write_cifar10(tmp_path, n=4)
    folder = tmp_path / "cifar-10-batches-py"
    at_fault = _cifar10_case(folder, case)
    dataset = get_dataset("cifar10")
    for read in (
        lambda: dataset.load(tmp_path, "train"),
        lambda: dataset.labels(tmp_path, "train"),
    ):
        with pytest.raises(DataError, match=needle) as info:
            read()
        assert str(at_fault) in str(info.value)
    assert dataset.load(tmp_path, "test")[0].shape == (4, 3, 32, 32)  # other split unharmed
    if case == "missing":
        assert "data_batch_5" in str(info.value) and "batches.meta" in str(info.value)


def test_cifar_other_failures(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    folder = tmp_path / "cifar-100-python"
    dataset = get_dataset("cifar100")
    batch = pickle.loads((folder / "test").read_bytes(), encoding="bytes")
    batch[b"fine_labels"][0] = 100
    write_pickle(folder / "test", batch)
    with pytest.raises(DataError, match=r"mislabeled data, b'fine_labels' must lie in 0..99"):
        dataset.load(tmp_path, "test")
    write_pickle(folder / "meta", {b"fine_label_names": [b"x"] * 99})
    with pytest.raises(DataError, match=r"meta.*100 class names, found 99"):
        dataset.num_classes(tmp_path)
    (folder / "meta").unlink()
    with pytest.raises(DataError, match="meta not found"):
        dataset.num_classes(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        dataset.load(tmp_path, "val")
    with pytest.raises(ImageSizeError, match="None or 32"):
        dataset.load(tmp_path, "train", image_size=28)
    with pytest.raises(DataError, match="None or 32"):
        get_dataset("cifar10").input_shape(16)
    with pytest.raises(DataError, match="cifar-10-batches-py/data_batch_1 not found"):
        get_dataset("cifar10").load(tmp_path, "train")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_with_foreign_global_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError) as info:
        get_dataset("cifar10").load(tmp_path, "train")
    msg = str(info.value)
    assert str(path) in msg and "system" in msg and "refused" in msg
    assert not marker.exists()

    # bytes as Python 3 pickles them (_codecs.encode) are fine, other codecs are not
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match="data_batch_4"):
        get_dataset("cifar10").labels(tmp_path, "train")
    assert pickle.loads(pickle_bytes({b"k": b"v"}, py2=False), encoding="bytes") == {b"k": b"v"}


# --- ImageNet -------------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalised(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> normalised (3, H, W), the reader's arithmetic."""
    x = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).to(torch.float32) / 255.0
    mean = torch.tensor(_IMAGENET_MEAN).view(3, 1, 1)
    return (x - mean) / torch.tensor(_IMAGENET_STD).view(3, 1, 1)


def test_imagenet_listing_and_load(tmp_path: Path) -> None:
    written = write_imagenet(tmp_path)
    dataset = get_dataset("imagenet")
    assert dataset.num_classes(tmp_path) == 3
    assert dataset.labels(tmp_path, "train").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert dataset.labels(tmp_path, "val").dtype == np.int64
    assert dataset.files(tmp_path) == [tmp_path / "train", tmp_path / "val"]
    assert dataset.files(tmp_path / "nothing") == []
    assert dataset.input_shape(None) == (3, 224, 224) and dataset.input_shape(16) == (3, 16, 16)

    x, y = dataset.load(tmp_path, "val", image_size=16)
    assert x.shape == (9, 3, 16, 16) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # a 40×50 JPEG: shorter side to round(16·256/224) = 18, i.e. 18×22, center crop at (1, 3)
    with Image.open(written["val"][3]) as img:
        ref = img.convert("RGB").resize((18, 22), Image.Resampling.BILINEAR)
    expected = _normalised(np.asarray(ref.crop((1, 3, 17, 19))))
    torch.testing.assert_close(x[3], expected, atol=1e-6, rtol=0)
    # the grayscale JPEG comes out as RGB with three equal planes
    assert IMAGE_SHAPES[2][2] == "L"
    grey = x[5] * torch.tensor(_IMAGENET_STD).view(3, 1, 1) + torch.tensor(_IMAGENET_MEAN).view(
        3, 1, 1
    )
    torch.testing.assert_close(grey[0], grey[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grey[0], grey[2], atol=1e-6, rtol=0)

    x224, _ = dataset.load(tmp_path, "train", indices=[1])
    assert x224.shape == (1, 3, 224, 224)


def test_imagenet_exact_pixel(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    # Lossless content under a .JPEG name (ILSVRC-2012 has such a file): a 16×20 image whose
    # shorter side already is round(14·256/224) = 16, so no resampling; crop at (1, 3).
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(20, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "train" / "n01443537" / "z_png.JPEG", format="PNG")
    dataset = get_dataset("imagenet")
    labels = dataset.labels(tmp_path, "train")
    assert len(labels) == 10 and labels[6] == 1
    x, y = dataset.load(tmp_path, "train", indices=[6], image_size=14)
    assert y.tolist() == [1]
    raw = int(pixels[3 + 2, 1 + 4, 1])  # output row 2, column 4, green
    expected = (np.float32(raw) / np.float32(255) - np.float32(0.456)) / np.float32(0.224)
    assert x[0, 1, 2, 4].item() == pytest.approx(float(expected), abs=1e-6)
    torch.testing.assert_close(x[0], _normalised(pixels[3:17, 1:15]), atol=0, rtol=0)


def test_imagenet_decodes_only_requested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = write_imagenet(tmp_path)
    dataset = get_dataset("imagenet")
    dataset.labels(tmp_path, "val")  # listing made before counting
    opened: list[Path] = []
    real_open = Image.open

    def spy(path: Path, *args: object, **kwargs: object) -> Image.Image:
        opened.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    scans: list[Path] = []
    real_scan = data._scan
    monkeypatch.setattr(
        data, "_scan", lambda folder, what: scans.append(folder) or real_scan(folder, what)
    )
    x, y = dataset.load(tmp_path, "val", indices=np.array([4, 0]), image_size=8)
    assert opened == [written["val"][4], written["val"][0]]
    assert y.tolist() == [1, 0] and x.shape == (2, 3, 8, 8)
    assert scans == []  # the listing is cached


def test_imagenet_failures(tmp_path: Path) -> None:
    dataset = get_dataset("imagenet")
    written = write_imagenet(tmp_path / "cut")
    jpeg = written["train"][4]
    jpeg.write_bytes(jpeg.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        dataset.load(tmp_path / "cut", "train", indices=[0, 4], image_size=8)
    assert str(jpeg) in str(info.value)
    assert dataset.load(tmp_path / "cut", "train", indices=[3, 5], image_size=8)[0].shape[0] == 2

    write_imagenet(tmp_path / "extra", val_classes=("n01440764", "n09999999"))
    with pytest.raises(DataError, match="mislabeled") as info:
        dataset.labels(tmp_path / "extra", "val")
    assert str(tmp_path / "extra" / "val" / "n09999999") in str(info.value)
    assert dataset.labels(tmp_path / "extra", "train").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]

    write_imagenet(tmp_path / "empty")
    (tmp_path / "empty" / "train" / "n00000000").mkdir()
    with pytest.raises(DataError, match="n00000000 holds no JPEG"):
        dataset.load(tmp_path / "empty", "train")

    write_imagenet(tmp_path / "noval")
    for path in (tmp_path / "noval" / "val").rglob("*.JPEG"):
        path.unlink()
    for folder in (tmp_path / "noval" / "val").iterdir():
        folder.rmdir()
    (tmp_path / "noval" / "val").rmdir()
    with pytest.raises(DataError) as info:
        dataset.labels(tmp_path / "noval", "val")
    msg = str(info.value)
    assert str(tmp_path / "noval" / "val") in msg and "sorted into folders" in msg

    flat = tmp_path / "flat"
    write_imagenet(flat)
    write_jpeg(flat / "val" / "ILSVRC2012_val_00000099.JPEG", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000099.JPEG"):
        dataset.labels(flat, "val")

    (tmp_path / "noval" / "val").mkdir()
    with pytest.raises(DataError, match="val has no class folders"):
        dataset.labels(tmp_path / "noval", "val")

    with pytest.raises(DataError, match="train not found"):
        dataset.num_classes(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"\['train', 'val'\]"):
        dataset.labels(flat, "test")
    with pytest.raises(ImageSizeError):
        dataset.load(flat, "train", image_size=0)


# --- augmentation ---------------------------------------------------------------------


def _is_augmented_copy(out: torch.Tensor, image: torch.Tensor, pad: int) -> bool:
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    _, h, w = image.shape
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if torch.equal(out, crop) or torch.equal(out, crop.flip(-1)):
                return True
    return False


def test_augment_batch() -> None:
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    state = torch.random.get_rng_state()
    a = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    b = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    c = augment_batch(x, torch.Generator().manual_seed(2), pad=2)
    assert torch.equal(torch.random.get_rng_state(), state)  # only the given generator is used
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)
    assert all(_is_augmented_copy(a[i], x[i], 2) for i in range(16))
    flipped = sum(
        torch.equal(o, i.flip(-1))
        for o, i in zip(augment_batch(x, torch.Generator().manual_seed(3), pad=0), x, strict=True)
    )
    unflipped = sum(
        torch.equal(o, i)
        for o, i in zip(augment_batch(x, torch.Generator().manual_seed(3), pad=0), x, strict=True)
    )
    assert flipped + unflipped == 16 and 0 < flipped < 16
    assert augment_batch(x[:0], torch.Generator(), pad=4).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        augment_batch(x[0], torch.Generator())
    with pytest.raises(ValueError, match="pad"):
        augment_batch(x, torch.Generator(), pad=-1)
