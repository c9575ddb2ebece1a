"""Stages of the data retrieval rules: one published file fetched, an archive unpacked.

The files land in ``resources/<dataset>/``, outside any run: no provenance records are written
for them (:func:`hessketch.provenance.record_outputs` skips paths outside ``results/<run>/``);
what vouches for them is the published checksum, checked before each gets its final name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hessketch import sources
from hessketch.errors import DataError

__all__ = ["fetch_data", "unpack_data"]

log = logging.getLogger(__name__)


def fetch_data(dataset: str, name: str, url: str, path: str | Path) -> None:
    """Fetch the published file ``name`` of ``dataset`` to ``path``, verified by its MD5.

    Args:
        dataset: A data set with a registered source (:data:`hessketch.sources.SOURCES`).
        name: One of its published file names.
        url: ``data.url``: "published", a base URL or a local mirror folder.
        path: Where the file goes (``resources/<dataset>/<name>``).

    Raises:
        DataError: If no URL gives the file with its published checksum.
    """
    source = sources.get_source(dataset)
    published = source.file(name)
    sources.fetch_file(
        name, path, sources.mirror_urls(source, url), published.md5, published.content_md5
    )


def unpack_data(dataset: str, archives: Sequence[str | Path], outputs: Sequence[str]) -> None:
    """Unpack the published archives of ``dataset`` beside them, each member verified.

    Args:
        dataset: A data set with a registered source.
        archives: The fetched archives, named as published, in the data root
            (``resources/<dataset>``).
        outputs: The files the rule promises; they must be the archives' members.

    Raises:
        DataError: If an archive is damaged or a member does not match its published MD5.
    """
    source = sources.get_source(dataset)
    placed: list[Path] = []
    for archive in archives:
        published = source.file(Path(archive).name)
        root = Path(archive).parent
        members = sources.unpack_tarball(archive, root, dict(published.members))
        log.info("unpacked %s: %d files, each with its published MD5", archive, len(members))
        placed += members
    missing = sorted({str(Path(o)) for o in outputs} - {str(p) for p in placed})
    if missing:
        raise DataError(f"the archives {list(archives)} of {dataset!r} did not give {missing}")
