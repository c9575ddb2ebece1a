"""Data retrieval (data.url): published files fetched from a mirror, verified, put in place.

Offline: the mirrors are local folders (or a loopback HTTP server) holding files in the real
layouts, the real Fashion-MNIST files of the Debian package where it is installed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_formats import write_cifar10, write_imagenet
from snakemake.utils import validate
from workflow_helpers import REPO, RUN, TINY, planned_jobs, snakemake, with_changes

from hessketch import sources
from hessketch.data import DATASETS, get_dataset
from hessketch.errors import DataError
from hessketch.pipeline.config import ConfigError, check_config, data_source_problems
from hessketch.pipeline.fetch import fetch_data, unpack_data

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-labels-idx1-ubyte.gz").is_file(),
    reason=f"the Debian package dataset-fashion-mnist is not installed ({FASHION} is absent)",
)
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
IDX_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def checked(config: dict) -> None:
    """Validate against the schema (filling defaults, as the workflow does), then check."""
    validate(config, str(SCHEMA))
    check_config(config, yaml.safe_load(SCHEMA.read_text()))


def fashion_mirror(folder: Path) -> Path:
    """A mirror folder: links to the Debian package's files under their published names."""
    folder.mkdir(parents=True)
    for name in IDX_NAMES:
        (folder / name).symlink_to(FASHION / name)
    return folder


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of a fetch or an unpacking left in `folder`."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".part") or ".unpack-" in p.name]


# --- the registry ---------------------------------------------------------------------


def test_every_data_set_has_a_source_with_published_checksums() -> None:
    assert set(sources.SOURCES) == set(DATASETS)
    for name, source in sources.SOURCES.items():
        if name == "imagenet":
            assert not source.downloadable and "image-net.org" in source.obtain
            continue
        assert source.urls and source.files, name
        for f in source.files:
            assert len(f.md5) == 32 and all(len(m) == 32 for _, m in f.members), f.name
    fashion = sources.get_source("fashion-mnist")
    assert fashion.names() == IDX_NAMES
    assert fashion.file("train-images-idx3-ubyte.gz").md5 == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert sources.get_source("mnist").file("t10k-labels-idx1-ubyte.gz").md5 == (
        "ec29112dd5afa0611ce80d1b7f02629c"
    )
    cifar = sources.get_source("cifar10")
    assert cifar.names(archives=True) == ["cifar-10-python.tar.gz"]
    assert cifar.file("cifar-10-python.tar.gz").md5 == "c58f30108f718f92721af3b95e74349a"
    assert [str(p) for p in cifar.targets("r")][-1] == "r/cifar-10-batches-py/batches.meta"
    assert sources.get_source("cifar100").file("cifar-100-python.tar.gz").md5 == (
        "eb9058c3a382ffc7106e4002c42a8d85"
    )
    # what a retrieval leaves is what the readers read
    for name in ("cifar10", "cifar100"):
        fmt = get_dataset(name).fmt
        read = [f"{fmt.folder}/{n}" for split in fmt.files.values() for n in split]
        read.append(f"{fmt.folder}/{fmt.meta}")
        assert sorted(str(p) for p in sources.get_source(name).targets("")) == sorted(read)
    for name in ("mnist", "fashion-mnist"):
        root = Path("r")
        assert get_dataset(name).files(root) == []  # nothing there: the reader lists nothing
        assert [p.name for p in sources.get_source(name).targets(root)] == IDX_NAMES
    with pytest.raises(ValueError, match="already has a registered source"):
        sources.register_source(sources.Source("mnist", homepage=""))
    with pytest.raises(ValueError, match="not a registered data set"):
        sources.register_source(sources.Source("svhn", homepage=""))
    with pytest.raises(DataError, match=r"publishes no file 'x\.gz'"):
        fashion.file("x.gz")


@needs_fashion
def test_the_debian_files_are_recompressed_copies_of_the_published_content() -> None:
    """Debian's .gz files are not byte-identical to the published ones, but hold their data."""
    for f in sources.get_source("fashion-mnist").files:
        raw = (FASHION / f.name).read_bytes()
        assert md5(raw) != f.md5  # recompressed by the package
        assert md5(gzip.decompress(raw)) == f.content_md5


# --- fetching, unit level -------------------------------------------------------------


def test_fetch_file_verifies_before_renaming_and_names_both_checksums(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    good = gzip.compress(b"published content")
    (mirror / "a.gz").write_bytes(good)
    dest = tmp_path / "resources" / "x" / "a.gz"
    assert sources.fetch_file("a.gz", dest, [str(mirror)], md5(good)) == dest
    assert dest.read_bytes() == good
    # a recompressed copy of the same content passes on the content's checksum
    other = gzip.compress(b"published content", compresslevel=1, mtime=12345)
    assert md5(other) != md5(good)
    (mirror / "a.gz").write_bytes(other)
    dest.unlink()
    content = md5(b"published content")
    sources.fetch_file("a.gz", dest, [f"file://{mirror}"], md5(good), content_md5=content)
    assert dest.read_bytes() == other
    # one flipped byte: refused, nothing under the final name, no temporary left
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (mirror / "a.gz").write_bytes(bytes(bad))
    dest.unlink()
    with pytest.raises(DataError) as err:
        sources.fetch_file("a.gz", dest, [str(mirror)], md5(good), content_md5=content)
    message = str(err.value)
    for part in (str(mirror / "a.gz"), md5(bytes(bad)), md5(good), "a.gz", "data.url"):
        assert part in message, message
    assert not dest.exists() and not leftovers(dest.parent)
    # a mirror without the file
    with pytest.raises(DataError, match="FileNotFoundError"):
        sources.fetch_file("b.gz", tmp_path / "b.gz", [str(mirror)], md5(good))


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server serving a mirror folder (no network beyond this machine)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_file_over_http_tries_the_urls_in_turn(
    tmp_path: Path, http_mirror: tuple[str, Path]
) -> None:
    base, folder = http_mirror
    data = b"some published bytes"
    (folder / "f.bin").write_bytes(data)
    dest = tmp_path / "out" / "f.bin"
    sources.fetch_file("f.bin", dest, [f"{base}/gone/", f"{base}/"], md5(data))
    assert dest.read_bytes() == data
    dest.unlink()
    with pytest.raises(DataError) as err:
        sources.fetch_file("f.bin", dest, [f"{base}/gone/"], md5(data))
    assert "HTTP Error 404" in str(err.value) and f"{base}/gone/f.bin" in str(err.value)
    assert not dest.exists() and not leftovers(dest.parent)


def test_mirror_urls_and_file_urls() -> None:
    fashion = sources.get_source("fashion-mnist")
    assert sources.mirror_urls(fashion, "published") == list(fashion.urls)
    assert sources.mirror_urls(fashion, "/srv/mirror") == ["/srv/mirror"]
    assert sources.file_url("https://h/x/", "a b.gz") == "https://h/x/a%20b.gz"
    assert sources.file_url("/srv/mirror", "a.gz") == "/srv/mirror/a.gz"
    with pytest.raises(DataError, match=r"image-net\.org"):
        sources.mirror_urls(sources.get_source("imagenet"), "published")


# --- CIFAR: an archive in the real layout ---------------------------------------------


def cifar_tarball(tmp_path: Path, extra: dict[str, tarfile.TarInfo] | None = None) -> Path:
    """A small cifar-10-python.tar.gz laid out as the published one (plus a readme)."""
    written = tmp_path / "written"
    write_cifar10(written, n=4)
    (written / "cifar-10-batches-py" / "readme.html").write_text("<html></html>")
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(written / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        for info in (extra or {}).values():
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return archive


def test_a_cifar_archive_is_fetched_unpacked_and_read(tmp_path: Path) -> None:
    archive = cifar_tarball(tmp_path)
    root = tmp_path / "resources" / "cifar10"
    fetched = sources.fetch_file(
        archive.name, root / archive.name, [str(archive.parent)], sources.md5_of(archive)
    )
    members = dict(sources.get_source("cifar10").file(archive.name).members)
    written = tmp_path / "written"
    ours = {name: sources.md5_of(written / name) for name in members}  # not the published ones
    placed = sources.unpack_tarball(fetched, root, ours)
    assert placed == sources.get_source("cifar10").unpacked(root)
    assert not (root / "cifar-10-batches-py" / "readme.html").exists()  # not asked for
    assert not leftovers(root)
    reader = get_dataset("cifar10")
    x, y = reader.load(root, "train")
    assert x.shape == (20, 3, 32, 32) and reader.num_classes(root) == 10
    batches = write_cifar10(tmp_path / "again", n=4)  # the same seed: the same pixels
    assert np.array_equal(y.numpy()[:4], batches["data_batch_1"][1])
    # the published member checksums: a fake archive fails them, and nothing is placed
    shutil.rmtree(root / "cifar-10-batches-py")
    with pytest.raises(DataError) as err:
        unpack_data("cifar10", [fetched], [str(p) for p in placed])
    name = "cifar-10-batches-py/data_batch_1"
    for part in (name, members[name], ours[name], "fetch it again"):
        assert part in str(err.value)
    assert not (root / "cifar-10-batches-py").exists() and not leftovers(root)
    # and the published archive checksum refuses it at the fetch already
    with pytest.raises(DataError, match="c58f30108f718f92721af3b95e74349a"):
        fetch_data("cifar10", archive.name, str(archive.parent), tmp_path / "x" / archive.name)


def test_unpacking_refuses_links_and_stays_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "evil"
    up = tarfile.TarInfo("../evil")
    up.size = 1
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = cifar_tarball(tmp_path, {"up": up})
    root = tmp_path / "resources" / "cifar10"
    members = {name: None for name, _ in sources.get_source("cifar10").file(archive.name).members}
    sources.unpack_tarball(archive, root, members)  # '../evil' is not asked for: ignored
    assert not outside.exists()
    with pytest.raises(ValueError, match=r"without '\.\.'"):
        sources.unpack_tarball(archive, root, {"../evil": None})
    # a member that is a link (in place of a batch) is refused before anything is extracted
    shutil.rmtree(root)
    linked = tmp_path / "linked"
    with tarfile.open(linked, "w:gz") as tar:
        tar.addfile(link)
    with pytest.raises(DataError, match="other than regular files"):
        sources.unpack_tarball(linked, root, {"cifar-10-batches-py/data_batch_1": None})
    assert not (root / "cifar-10-batches-py").exists() and not leftovers(root)
    # a truncated archive
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.tar\.gz"):
        sources.unpack_tarball(cut, root, members)


# --- ImageNet: no download, a layout check --------------------------------------------


def test_the_imagenet_layout_check(tmp_path: Path) -> None:
    good = tmp_path / "good"
    write_imagenet(good)
    sources.check_imagenet_layout(good)
    flat = tmp_path / "flat"
    write_imagenet(flat)
    for path in sorted((flat / "val").rglob("*.JPEG")):
        path.rename(flat / "val" / path.name)
    for folder in (flat / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    with pytest.raises(DataError) as err:
        sources.check_imagenet_layout(flat)
    message = str(err.value)
    for part in ("holds images directly", "val/<class>/*.JPEG", "image-net.org", "devkit"):
        assert part in message, message
    shutil.rmtree(flat / "val")
    with pytest.raises(DataError, match=r"folder .*val not found"):
        sources.check_imagenet_layout(flat)
    # before any job: a configured tree that is not laid out so is a config error
    config = with_changes(
        TINY,
        data={"dataset": "imagenet", "root": str(flat), "image_size": 8},
        model={"widths": [192, 16, 3]},
        hessian={"sets": {"val": 3}},
    )
    with pytest.raises(ConfigError, match=r"data.root: ImageNet under .* is not laid out"):
        checked(config)


# --- the config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": "published", "root": "/data"}, "data.url / data.root: both are set"),
        ({"url": "ftp://host/mnist/"}, "data.url: 'ftp://host/mnist/' has the scheme ftp://"),
        ({"url": "/no/such/mirror"}, "data.url: the mirror /no/such/mirror lacks train-images"),
        ({"dataset": "imagenet", "url": "published"}, "data.url: data set 'imagenet' has no"),
    ],
)
def test_data_url_errors_name_the_key(data: dict, message: str) -> None:
    config = with_changes(TINY, data=data)
    if data.get("dataset") == "imagenet":
        config["hessian"]["sets"] = {"val": 30}
    with pytest.raises(ConfigError, match=message):
        checked(config)


def test_a_published_url_passes_the_config_check(tmp_path: Path) -> None:
    checked(with_changes(TINY, data={"url": "published"}))
    checked(with_changes(TINY, data={"url": "https://mirror.example/mnist/"}))


def test_no_source_names_the_files_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No data.url, no data.root, nothing at the default location: the files and the fixes."""
    (problem,) = data_source_problems(TINY)  # mnist: no default location
    for part in ("data.root: null", "train-images-idx3-ubyte", "data.url: published", "mirror"):
        assert part in problem, problem
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(type(get_dataset("fashion-mnist")), "default_root", empty)
    fashion = with_changes(TINY, data={"dataset": "fashion-mnist"})
    (problem,) = data_source_problems(fashion)
    assert f"the default location {empty} of data set 'fashion-mnist' holds none" in problem
    assert f"in {empty}" in problem and "resources/fashion-mnist/" in problem
    assert data_source_problems(with_changes(fashion, data={"url": "published"})) == []
    cifar = data_source_problems(with_changes(TINY, data={"dataset": "cifar10"}))
    assert "cifar-10-batches-py holds data_batch_1" in cifar[0] and "data.url" in cifar[0]
    imagenet = data_source_problems(with_changes(TINY, data={"dataset": "imagenet"}))
    assert "image-net.org" in imagenet[0] and "data.url: published" not in imagenet[0]


# --- the workflow ---------------------------------------------------------------------


def test_the_dry_run_without_any_source_fails_naming_the_files(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", config=TINY)  # mnist, data.root: null
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no data:" in message and "train-images-idx3-ubyte" in message, message[-3000:]
    assert "data.url: published" in message and "mirror" in message
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@needs_fashion
def test_fashion_mnist_is_fetched_from_a_mirror_and_verified(tmp_path: Path) -> None:
    mirror = fashion_mirror(tmp_path / "mirror")
    config = with_changes(TINY, data={"dataset": "fashion-mnist", "url": str(mirror)})
    # the whole study is planned from resources/, after one fetch job per published file
    dry = snakemake(tmp_path, "-n", config=config)
    jobs = planned_jobs(dry)
    assert jobs["fetch_data"] == 4 and jobs["train_model"] == 1
    assert "input: resources/fashion-mnist/train-images-idx3-ubyte.gz" in dry.stdout
    root = tmp_path / "resources" / "fashion-mnist"
    targets = [f"resources/fashion-mnist/{name}" for name in IDX_NAMES]
    run = snakemake(tmp_path, *targets, config=config)
    assert run.returncode == 0, run.stderr[-3000:]
    for f in sources.get_source("fashion-mnist").files:
        raw = (root / f.name).read_bytes()
        assert md5(gzip.decompress(raw)) == f.content_md5
        log = (tmp_path / RUN / "logs" / "fetch_data" / f"{f.name}.log").read_text()
        assert f"gunzipped content has the published MD5 {f.content_md5}" in log, log
    assert not leftovers(root)
    assert len(get_dataset("fashion-mnist").labels(root, "test")) == 10_000
    # fetched once: the rest of the study is what remains to do, and the mirror may go
    for link in mirror.iterdir():
        link.unlink()
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config))
    assert "fetch_data" not in jobs and jobs["train_model"] == 1


@needs_fashion
def test_a_damaged_mirror_file_fails_naming_it_and_both_checksums(tmp_path: Path) -> None:
    mirror = fashion_mirror(tmp_path / "mirror")
    name = "t10k-labels-idx1-ubyte.gz"
    bad = bytearray((FASHION / name).read_bytes())
    bad[len(bad) // 2] ^= 0x01
    (mirror / name).unlink()
    (mirror / name).write_bytes(bytes(bad))
    config = with_changes(TINY, data={"dataset": "fashion-mnist", "url": str(mirror)})
    run = snakemake(tmp_path, f"resources/fashion-mnist/{name}", config=config)
    assert run.returncode != 0
    log = (tmp_path / RUN / "logs" / "fetch_data" / f"{name}.log").read_text()
    published = sources.get_source("fashion-mnist").file(name)
    for part in (str(mirror / name), md5(bytes(bad)), published.md5, published.content_md5):
        assert part in log, log[-3000:]
    root = tmp_path / "resources" / "fashion-mnist"
    assert not (root / name).exists() and not leftovers(root)
