"""The ``hessketch`` command: ``hessketch verify results/<run> [--repair]``.

``verify`` walks the provenance chain of a run (:func:`hessketch.provenance.verify_run`) and
prints every break with the command that repairs it; it exits with status 1 if there is one.
``--repair`` puts every file that was changed since it was written, or that no record
describes, in the run's quarantine (a copy kept, the original marked out of date), so that the
next plain ``snakemake`` regenerates it and everything computed from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hessketch.provenance import quarantine, verify_run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hessketch`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="hessketch", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check a run's files against their provenance")
    verify.add_argument("run", type=Path, help="the run's folder, results/<run>")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="quarantine changed and unrecorded files (copies kept in <run>/quarantine/; a "
        "plain snakemake then regenerates them)",
    )
    args = parser.parse_args(argv)
    if not (args.run / "provenance").is_dir():
        print(f"{args.run}: no provenance records (results/<run>/provenance/)", file=sys.stderr)
        return 2
    breaks = verify_run(args.run)
    if not breaks:
        print(f"{args.run}: every file matches its provenance record; the chain is whole")
        return 0
    print("path\tproblem\trepair")
    for item in breaks:
        print(f"{item.path}\t{item.problem}\t{item.repair}")
    if args.repair:
        moved = set()
        for item in breaks:
            if item.problem.startswith(("changed since", "no record")) and item.path not in moved:
                where = quarantine(args.run.parent.parent / item.path)
                moved.add(item.path)
                print(f"quarantined {item.path} (kept at {where})")
        print("now run snakemake: it regenerates what was quarantined and what depends on it")
    return 1


if __name__ == "__main__":
    sys.exit(main())
