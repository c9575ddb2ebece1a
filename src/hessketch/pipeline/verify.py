"""Stage ``verify``: walk a run's provenance chain and report every break with its repair."""

from __future__ import annotations

import logging
from pathlib import Path

from hessketch.errors import IntegrityError
from hessketch.provenance import verify_run

__all__ = ["verify_provenance"]

log = logging.getLogger(__name__)


def verify_provenance(*, run_dir: str | Path) -> None:
    """Raise :class:`IntegrityError` listing every break of the chain of ``run_dir``.

    Each file of the run against its provenance record, each record's inputs against theirs,
    and the files no record describes (:func:`hessketch.provenance.verify_run`). Nothing is
    changed; ``hessketch verify <run> --repair`` quarantines the broken files.
    """
    breaks = verify_run(run_dir)
    if breaks:
        lines = "\n".join(f"  {b.path}: {b.problem}; repair: {b.repair}" for b in breaks)
        raise IntegrityError(
            f"{len(breaks)} breaks in the provenance chain of {run_dir}:\n{lines}\n"
            f"`hessketch verify {run_dir} --repair` quarantines them; a plain `snakemake` "
            "then regenerates them"
        )
    records = sum(1 for _ in (Path(run_dir) / "provenance").rglob("*.json"))
    log.info("%s: %d files match their provenance records; the chain is whole", run_dir, records)
