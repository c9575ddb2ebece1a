"""Stage ``compare_to_exact``: how close the sketched results are to the exact reference."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from hessketch.errors import IntegrityError
from hessketch.metrics import subspace_overlap
from hessketch.pipeline.common import check_eigenpairs_at, read_eigenpairs, read_table, write_table
from hessketch.store import read_json
from hessketch.trajectory import Trajectory

__all__ = ["compare_to_exact"]

log = logging.getLogger(__name__)


def compare_to_exact(
    *,
    sketched: Mapping[int, Mapping[str, str | Path]],
    exact: Mapping[int, Mapping[str, str | Path]],
    top: int,
    table_path: str | Path,
    trajectory_path: str | Path,
) -> None:
    """One row per step with both methods.

    Columns: the mask overlap at the reported k (sketched with its interval, exact, absolute
    difference, whether the exact value lies inside the interval), over all k that both have
    the number of k whose interval misses the exact overlap (it must be 0: the interval
    provably holds under the certificate's assumptions), the median and maximum relative error
    of the ``top`` eigenvalue magnitudes, and the overlap of the sketched with the exact top-k
    eigenspace.

    Args:
        sketched: step → ``{"eigenpairs": path, "summary": path}`` of the sketched method.
        exact: the same for the exact method.
        top: number of leading eigenvalues compared.
        table_path: where the table goes.
        trajectory_path: the parameters every eigenpair file and summary must be of.

    Raises:
        IntegrityError: a file does not match its checksum, or is of other parameters or
            another step than the trajectory's.
    """
    traj = Trajectory.open(trajectory_path)
    rows = []
    for step in sorted(set(sketched) & set(exact)):
        theta = traj.params(step)
        where = f"step {step} of {trajectory_path}"
        summaries = {}
        for method, files in (("sketched", sketched[step]), ("exact", exact[step])):
            check_eigenpairs_at(files["eigenpairs"], theta, where)
            summaries[method] = read_json(files["summary"], "overlap summary")
            if summaries[method].get("step") != step:
                raise IntegrityError(
                    f"overlap summary {files['summary']} is of step "
                    f"{summaries[method].get('step')}, not {step}",
                    damaged=files["summary"],
                    fix=f"regenerate it: snakemake --forcerun {files['summary']}",
                )
        summary_sk, summary_ex = summaries["sketched"], summaries["exact"]
        k = summary_sk["k"]
        val_sk, vec_sk, _ = read_eigenpairs(sketched[step]["eigenpairs"], k)
        val_ex, vec_ex, _ = read_eigenpairs(exact[step]["eigenpairs"], k)
        rel = (val_sk[:top].abs() - val_ex[:top].abs()).abs() / val_ex[:top].abs()
        ours = read_table(Path(sketched[step]["summary"]).with_name("overlap.tsv"))
        ref = read_table(Path(exact[step]["summary"]).with_name("overlap.tsv"))
        both = min(len(ours["k"]), len(ref["k"]))
        exact_curve = ref["overlap"][:both]
        missed = (exact_curve < ours["overlap_low"][:both]) | (
            exact_curve > ours["overlap_high"][:both]
        )
        inside = summary_sk["overlap_low"] <= summary_ex["overlap"] <= summary_sk["overlap_high"]
        if missed.any():
            log.warning(
                "step %d: the exact overlap lies outside the sketched interval at k = %s: an "
                "assumption of the certificate failed",
                step,
                (ours["k"][:both][missed]).astype(int).tolist()[:10],
            )
        rows.append(
            {
                "step": step,
                "k": k,
                "overlap_sketched": summary_sk["overlap"],
                "overlap_low": summary_sk["overlap_low"],
                "overlap_high": summary_sk["overlap_high"],
                "overlap_exact": summary_ex["overlap"],
                "exact_inside": int(inside),
                "space_certified": int(summary_sk["certified"]),
                "k_outside": int(missed.sum()),
                "k_compared": both,
                "overlap_abs_difference": abs(summary_sk["overlap"] - summary_ex["overlap"]),
                "chance": summary_sk["chance"],
                f"median_rel_error_top{top}": float(torch.median(rel)),
                f"max_rel_error_top{top}": float(rel.max()),
                "eigenspace_overlap": subspace_overlap(vec_sk, vec_ex),
            }
        )
        log.info("step %d: %s", step, rows[-1])
    write_table(table_path, rows)
