"""Where each data set is published, and its retrieval: fetched, verified, then put in place.

Each registered data set (:data:`hessketch.data.DATASETS`) has one registered :class:`Source`:
the file names its authors publish, the URLs they publish them at and their published MD5
checksums. A data set is added by registering its source beside its reader::

    register_source(Source("kmnist", homepage="...", urls=("https://.../",), files=(...)))

:func:`fetch_file` copies one published file from a URL (``http://``, ``https://``,
``file://``) or a local folder (a mirror) to a temporary name next to its destination, checks
its MD5 and only then renames it into place, so that a file under its final name has always
been verified. :func:`unpack_tarball` extracts an archive's members (tarfile's ``"data"``
filter: no absolute paths, no ``..``, no links out of the folder) and puts them in place once
each is verified. ImageNet (ILSVRC-2012) has no download: its source says where to obtain it,
and :func:`check_imagenet_layout` checks the tree the reader expects.

Checksums are those the data sets' authors publish (Fashion-MNIST, CIFAR) or that
torchvision publishes for the authors' files (MNIST, whose page gives none). A gzipped file
whose bytes differ but whose *content* matches the published MD5 of the uncompressed file is
accepted as a recompressed copy, and the log says so: Debian's ``dataset-fashion-mnist``
recompressed the four ``.gz`` files (other MD5s), but their content is the published data.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hessketch.data import DATASETS, IDX_FILES, ImageFolderDataset, get_dataset
from hessketch.errors import DataError

__all__ = [
    "PUBLISHED",
    "RESOURCES",
    "SOURCES",
    "PublishedFile",
    "Source",
    "check_imagenet_layout",
    "check_mirror",
    "fetch_file",
    "fetch_published",
    "file_url",
    "get_source",
    "md5_of",
    "mirror_urls",
    "register_source",
    "resource_root",
    "unpack_tarball",
]

log = logging.getLogger(__name__)

# The folder, relative to the working directory, that retrieved data sets are placed in.
RESOURCES = Path("resources")
# The `data.url` value that means "the authors' own URLs".
PUBLISHED = "published"
# Seconds without data before a download is given up.
TIMEOUT = 60

_CHUNK = 1 << 20
_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class PublishedFile:
    """One file as its authors publish it.

    Attributes:
        name: The published file name, e.g. "train-images-idx3-ubyte.gz".
        md5: The published MD5 of the file.
        content_md5: For a gzipped file, the MD5 of its uncompressed content, so that a
            recompressed copy of the same content is recognised; None if not published.
        members: For an archive, the files it is unpacked to (paths relative to the data root)
            with their published MD5s; empty for a file used as it is.
    """

    name: str
    md5: str
    content_md5: str | None = None
    members: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Source:
    """Where a data set is published.

    Attributes:
        dataset: The registered data set's name.
        homepage: The authors' page of the data set.
        urls: Base URLs the files are published at, in the order they are tried; empty when
            there is no download.
        files: The published files.
        obtain: How to obtain the data by hand, where there is no download.
    """

    dataset: str
    homepage: str
    urls: tuple[str, ...] = ()
    files: tuple[PublishedFile, ...] = ()
    obtain: str = ""

    @property
    def downloadable(self) -> bool:
        """Whether the files can be fetched (from `urls` or a mirror)."""
        return bool(self.files)

    def file(self, name: str) -> PublishedFile:
        """Return the published file `name`.

        Raises:
            DataError: If the source publishes no such file; the message lists those it does.
        """
        for published in self.files:
            if published.name == name:
                return published
        raise DataError(
            f"data set {self.dataset!r} publishes no file {name!r}; it publishes "
            f"{[f.name for f in self.files]}"
        )

    def outputs(self, name: str, root: str | Path) -> list[Path]:
        """Return the files that retrieving the published file `name` leaves under `root`."""
        published = self.file(name)
        if published.members:
            return [Path(root) / member for member, _ in published.members]
        return [Path(root) / published.name]

    def targets(self, root: str | Path) -> list[Path]:
        """Return every file the reader reads once all published files are retrieved."""
        return [path for f in self.files for path in self.outputs(f.name, root)]

    def names(self, archives: bool | None = None) -> list[str]:
        """Return the published file names: all, only the archives, or only the others."""
        return [f.name for f in self.files if archives is None or bool(f.members) == archives]

    def pattern(self, archives: bool | None = None) -> str:
        """Return a regular expression matching exactly those of :meth:`names`."""
        return "|".join(re.escape(name) for name in self.names(archives))

    def unpacked(self, root: str | Path) -> list[Path]:
        """Return the members of every published archive, under `root`."""
        return [path for name in self.names(archives=True) for path in self.outputs(name, root)]


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Register the source of a registered data set and return it.

    Raises:
        ValueError: If the data set is not registered or already has a source.
    """
    if source.dataset not in DATASETS:
        raise ValueError(
            f"register_source: {source.dataset!r} is not a registered data set "
            f"(register its reader first); registered: {sorted(DATASETS)}"
        )
    if source.dataset in SOURCES:
        raise ValueError(f"data set {source.dataset!r} already has a registered source")
    SOURCES[source.dataset] = source
    return source


def get_source(dataset: str) -> Source:
    """Return the registered source of `dataset`.

    Raises:
        ValueError: If `dataset` has no registered source; the message lists those that do.
    """
    if dataset not in SOURCES:
        raise ValueError(f"data set {dataset!r} has no registered source; known: {sorted(SOURCES)}")
    return SOURCES[dataset]


def resource_root(dataset: str) -> Path:
    """Return `resources/<dataset>`, where a retrieved data set lies (relative to the cwd)."""
    return RESOURCES / dataset


# --- the registered sources -----------------------------------------------------------


def _idx_files(md5s: Mapping[str, tuple[str, str]]) -> tuple[PublishedFile, ...]:
    """The four gzipped IDX files, in the order of `IDX_FILES`, with (gz, content) MD5s."""
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    return tuple(PublishedFile(f"{s}.gz", md5s[s][0], content_md5=md5s[s][1]) for s in stems)


register_source(
    Source(
        "mnist",
        homepage="http://yann.lecun.com/exdb/mnist/",
        # the authors' page, then the mirror torchvision uses (the page often refuses)
        urls=(
            "http://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        files=_idx_files(
            {
                "train-images-idx3-ubyte": (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "6bbc9ace898e44ae57da46a324031adb",
                ),
                "train-labels-idx1-ubyte": (
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "a25bea736e30d166cdddb491f175f624",
                ),
                "t10k-images-idx3-ubyte": (
                    "9fb629c4189551a2d022fa330f9573f3",
                    "2646ac647ad5339dbf082846283269ea",
                ),
                "t10k-labels-idx1-ubyte": (
                    "ec29112dd5afa0611ce80d1b7f02629c",
                    "27ae3e4e09519cfbb04c329615203637",
                ),
            }
        ),
    )
)

register_source(
    Source(
        "fashion-mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        files=_idx_files(
            {
                "train-images-idx3-ubyte": (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                ),
                "train-labels-idx1-ubyte": (
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "9018921c3c673c538a1fc5bad174d6f9",
                ),
                "t10k-images-idx3-ubyte": (
                    "bef4ecab320f06d8554ea6380940ec79",
                    "8181f5470baa50b63fa0f6fddb340f0a",
                ),
                "t10k-labels-idx1-ubyte": (
                    "bb300cfdad3c16e7a12a480ee83cd310",
                    "15d484375f8d13e6eb1aabb0c3f46965",
                ),
            }
        ),
    )
)

register_source(
    Source(
        "cifar10",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        urls=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            PublishedFile(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                members=tuple(
                    (f"cifar-10-batches-py/{name}", md5)
                    for name, md5 in (
                        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                        ("test_batch", "40351d587109b95175f43aff81a1287e"),
                        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
                    )
                ),
            ),
        ),
    )
)

register_source(
    Source(
        "cifar100",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        urls=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            PublishedFile(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                members=tuple(
                    (f"cifar-100-python/{name}", md5)
                    for name, md5 in (
                        ("train", "16019d7e3df5f24257cddd939b257f8d"),
                        ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                        ("meta", "7973b15100ade9c7d40fb424638fde48"),
                    )
                ),
            ),
        ),
    )
)

register_source(
    Source(
        "imagenet",
        homepage="https://image-net.org/challenges/LSVRC/2012/",
        obtain=(
            "ImageNet (ILSVRC-2012) has no public download: register at "
            "https://image-net.org/download.php, accept its terms of access and download "
            "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar; unpack the training tar "
            "(one tar per class, each unpacked into its own folder train/<wnid>/) and sort "
            "the 50,000 validation images into val/<wnid>/ by the labels of the development "
            "kit (ILSVRC2012_devkit_t12.tar.gz)"
        ),
    )
)


# --- fetching -------------------------------------------------------------------------


def mirror_urls(source: Source, url: str) -> list[str]:
    """The base URLs that `data.url` names: the published ones, or that of one mirror.

    Args:
        source: The data set's source.
        url: "published", a base URL (http://, https://, file://) or a local folder.

    Raises:
        DataError: If the data set has no download, or "published" names no URL.
    """
    if not source.downloadable:
        raise DataError(f"data set {source.dataset!r} has no download; {source.obtain}")
    if url == PUBLISHED:
        if not source.urls:
            raise DataError(
                f"data set {source.dataset!r} has no published URL; set data.url to a mirror "
                f"holding {', '.join(source.names())}"
            )
        return list(source.urls)
    return [url]


def file_url(base: str, name: str) -> str:
    """The URL (or local path) of the file `name` under a base URL or a mirror folder."""
    if urllib.parse.urlsplit(base).scheme in _SCHEMES:
        return f"{base.rstrip('/')}/{urllib.parse.quote(name)}"
    return str(Path(base) / name)


def md5_of(path: str | Path) -> str:
    """Return the MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _gunzipped_md5(path: Path) -> str | None:
    """MD5 of a gzipped file's content; None if it is not valid gzip."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")


def _download(url: str, to: Path) -> None:
    """Copy `url` (http, https, file, or a local path) to the file `to`."""
    if urllib.parse.urlsplit(url).scheme in _SCHEMES:
        request = urllib.request.Request(url, headers={"User-Agent": "hessketch"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(to, "wb") as f:
            shutil.copyfileobj(response, f, _CHUNK)
    else:
        shutil.copyfile(url, to)


def _verify(
    path: Path, md5: str, content_md5: str | None, url: str, dest: Path
) -> tuple[str, str | None]:
    """Return (how it was verified, None), or ("", the mismatch) when it does not match."""
    actual = md5_of(path)
    if actual == md5:
        return f"MD5 {actual} as published", None
    if content_md5 is not None:
        content = _gunzipped_md5(path)
        if content == content_md5:
            return (
                f"MD5 {actual} differs from the published {md5}, but its gunzipped content "
                f"has the published MD5 {content_md5} (a recompressed copy of the same data)",
                None,
            )
    also = f" (nor its content the published {content_md5})" if content_md5 else ""
    return "", (
        f"checksum mismatch for {dest.name} from {url}: MD5 {actual}, expected the published "
        f"MD5 {md5}{also}"
    )


def fetch_file(
    name: str,
    dest: str | Path,
    urls: Sequence[str],
    md5: str,
    content_md5: str | None = None,
) -> Path:
    """Fetch the file `name` to `dest`, verified by its MD5 before it gets its final name.

    Each base URL is tried in turn: the file is copied to a temporary name beside `dest`, its
    MD5 checked (or, given `content_md5`, that of its gunzipped content), and only then
    renamed to `dest`. A file that fails leaves nothing behind.

    Args:
        name: The published file name, appended to each base URL.
        dest: Where the file goes.
        urls: Base URLs (http://, https://, file://) or local mirror folders.
        md5: The expected MD5 of the file.
        content_md5: The expected MD5 of its gunzipped content, or None.

    Returns:
        `dest`.

    Raises:
        DataError: If no URL gave the file with that checksum; the message names each URL
            tried, the file, the expected and the actual checksums and the fix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for base in urls:
        url = file_url(base, name)
        tmp = _temporary(dest)
        try:
            log.info("fetching %s from %s", dest, url)
            _download(url, tmp)
            how, mismatch = _verify(tmp, md5, content_md5, url, dest)
            if mismatch is not None:
                failures.append(mismatch)
                log.error("%s", mismatch)
                continue
            os.replace(tmp, dest)
            log.info("verified %s: %s", dest, how)
            return dest
        except (OSError, urllib.error.URLError, ValueError) as err:  # HTTPError is a URLError
            failures.append(f"{url}: {type(err).__name__}: {err}")
            log.error("cannot fetch %s: %s", url, err)
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"cannot fetch {dest}, nothing was placed there; "
        + "; ".join(failures)
        + f"; place the published {name} (MD5 {md5}) in the mirror, point data.url at another "
        "mirror (a base URL or folder holding the published files) or use data.url: published"
    )


def _member_name(member: str) -> str:
    parts = Path(member).parts
    if Path(member).is_absolute() or ".." in parts or not parts:
        raise ValueError(f"archive member {member!r} must be a relative path without '..'")
    return "/".join(parts)


def unpack_tarball(
    archive: str | Path, root: str | Path, members: Mapping[str, str | None]
) -> list[Path]:
    """Unpack `members` of a tar archive under `root`, each verified before it is placed.

    The members are extracted with tarfile's ``"data"`` filter (no absolute paths, no ``..``,
    no links pointing out, no device files) into a temporary folder under `root`, checked
    against their MD5s (None: not checked) and renamed into place; on any failure nothing
    is placed and the temporary folder is removed. Other members of the archive are ignored.

    Args:
        archive: The tar file (gzipped or not).
        root: The folder the members' relative paths are placed under.
        members: Relative path in the archive → expected MD5 or None.

    Returns:
        The paths placed, in the order of `members`.

    Raises:
        DataError: If the archive is unreadable, lacks a member (or has it as a non-file),
            a member is refused by the filter or does not match its MD5.
        ValueError: If a member name is absolute or contains "..".
    """
    archive, root = Path(archive), Path(root)
    names = {_member_name(m): md5 for m, md5 in members.items()}
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / f".unpack-{uuid.uuid4().hex}"
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                found = {}
                for info in tar.getmembers():
                    name = "/".join(Path(info.name).parts)
                    if name in names:
                        found[name] = info
                missing = [n for n in names if n not in found or not found[n].isfile()]
                if missing:
                    raise DataError(
                        f"archive {archive} lacks the files {missing} (or holds them as other "
                        "than regular files): it is not the published archive; fetch it again"
                    )
                tar.extractall(scratch, members=[found[n] for n in names], filter="data")
        except tarfile.TarError as err:
            raise DataError(
                f"archive {archive}: unreadable or refused ({type(err).__name__}: {err}); "
                "fetch it again from the published URL or another mirror"
            ) from err
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"archive {archive}: truncated or corrupt ({type(err).__name__}: {err}); "
                "fetch it again"
            ) from err
        for name, md5 in names.items():
            if md5 is not None and (actual := md5_of(scratch / name)) != md5:
                raise DataError(
                    f"checksum mismatch for {name} unpacked from {archive}: MD5 {actual}, "
                    f"expected the published MD5 {md5}; the archive is not the published "
                    "one: delete it and fetch it again"
                )
        placed = []
        for name in names:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / name, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_published(dataset: str, name: str, root: str | Path, url: str) -> list[Path]:
    """Retrieve one published file of `dataset` into `root`, verified; unpack an archive.

    Args:
        dataset: A data set with a registered source.
        name: One of its published file names.
        root: The data root (the workflow's `resources/<dataset>`).
        url: `data.url`: "published", a base URL or a local mirror folder.

    Returns:
        The files placed: the file itself, or an archive's members (the archive is kept
        beside them, under its published name).

    Raises:
        DataError: If the file cannot be fetched with its published checksum, or the
            archive's members do not match theirs.
    """
    source = get_source(dataset)
    published = source.file(name)
    root = Path(root)
    path = fetch_file(
        name, root / name, mirror_urls(source, url), published.md5, published.content_md5
    )
    if not published.members:
        return [path]
    placed = unpack_tarball(path, root, dict(published.members))
    log.info("unpacked %d files of %s, each with its published MD5", len(placed), path)
    return placed


# --- checks without a download --------------------------------------------------------


def check_imagenet_layout(root: str | Path, dataset: str = "imagenet") -> None:
    """Check that `root` holds the class-per-folder trees the ImageNet reader expects.

    Every split folder must exist, hold class folders (not images lying flat, as the
    validation tar unpacks), each with JPEG files, and the classes of the other splits must be
    among the training classes. Each class folder is listed once.

    Raises:
        DataError: Naming every problem found, the layout expected and where to obtain the
            data.
    """
    reader = get_dataset(dataset)
    if not isinstance(reader, ImageFolderDataset):
        raise ValueError(f"data set {dataset!r} is not a class-per-folder image tree")
    problems = []
    for split in reader.splits:
        try:
            reader.listing(Path(root), split)
        except DataError as err:
            problems.append(str(err).split("; place ")[0])
    if problems:
        source = SOURCES.get(dataset)
        obtain = f"; {source.obtain}" if source is not None and source.obtain else ""
        raise DataError(
            f"{reader.title} under {root} is not laid out as expected: "
            + "; ".join(problems)
            + f"; {reader.expected(Path(root))}{obtain}"
        )


def check_mirror(dataset: str, url: str, root: str | Path) -> list[str]:
    """The published files a local mirror lacks, of those not yet retrieved under `root`.

    Nothing is checked for a URL with a scheme (no network before the jobs) or for
    "published".
    """
    if url == PUBLISHED or urllib.parse.urlsplit(url).scheme in ("http", "https"):
        return []
    split = urllib.parse.urlsplit(url)
    folder = Path(urllib.parse.unquote(split.path)) if split.scheme == "file" else Path(url)
    source = get_source(dataset)
    lacking = []
    for name in source.names():
        if all(p.is_file() for p in source.outputs(name, root)):
            continue
        with contextlib.suppress(OSError):
            if (folder / name).is_file():
                continue
        lacking.append(name)
    return lacking
