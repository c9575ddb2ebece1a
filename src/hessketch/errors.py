"""Exception types of hessketch.

Every error names what was at fault (a file, a config key, a shard) and what was expected,
so that a failed workflow job can be fixed from its log alone.
"""

from __future__ import annotations


class HessketchError(Exception):
    """Base class of all errors raised by hessketch.

    ``damaged`` names the file at fault when the error is that a file is damaged, edited,
    stale or misplaced: a workflow job moves it aside (:func:`hessketch.provenance.quarantine`)
    so that the next plain run regenerates it. ``fix`` is the advice for library use, where
    nothing is moved (e.g. "regenerate it: snakemake --forcerun <file>").
    """

    def __init__(self, message: str, *, damaged: object = None, fix: str | None = None):
        super().__init__(f"{message}; {fix}" if fix else message)
        self.problem = message
        self.damaged = damaged
        self.fix = fix


class DataError(HessketchError):
    """A data file is missing, malformed, or inconsistent with what was asked for."""


class TrajectoryError(HessketchError):
    """A parameter trajectory file is missing, corrupt, or lacks a requested step."""


class SketchStoreError(HessketchError):
    """A sketch store or receipt is incomplete, corrupt, or stale (provenance mismatch)."""


class NonDeterminismError(HessketchError):
    """Two applications of an operator to the same vector disagreed."""


class NumericalError(HessketchError):
    """A numerical step cannot produce a trustworthy answer (e.g. a rank-deficient sketch)."""


class IntegrityError(HessketchError):
    """A result file does not match its checksum, or is of other parameters than it claims."""
