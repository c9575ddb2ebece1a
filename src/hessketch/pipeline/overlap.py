"""Stage ``compute_overlap``: magnitude-mask overlap, Grassmannian distances, spectrum tables."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from hessketch.errors import HessketchError
from hessketch.metrics import (
    chance_overlap,
    curvature_concentration,
    grassmann_distances,
    magnitude_order,
    mask_overlap_curve,
    mask_principal_angles,
)
from hessketch.pipeline.common import (
    check_eigenpairs_at,
    eigenpair_dims,
    read_eigenpairs,
    write_table,
)
from hessketch.store import read_json, write_json_atomic
from hessketch.trajectory import Trajectory

__all__ = ["compute_overlap", "distance_grid"]

log = logging.getLogger(__name__)


def distance_grid(kmax: int, extra: tuple[int, ...] = ()) -> list[int]:
    """Prefix sizes at which principal angles are computed: 1, 2, 5, 10, 20, 50, … ≤ kmax."""
    ks = {m * 10**e for e in range(7) for m in (1, 2, 5)}
    return sorted(k for k in ks | set(extra) | {kmax} if 1 <= k <= kmax)


def compute_overlap(
    *,
    eigenpairs_path: str | Path,
    trajectory_path: str | Path,
    step: int,
    report_k: int,
    random_mask_seed: int,
    overlap_path: str | Path,
    distances_path: str | Path,
    spectrum_path: str | Path,
    summary_path: str | Path,
    certificate_path: str | Path | None = None,
) -> None:
    """Overlap of the top-k eigenspace with the top-k magnitude mask for every k, and more.

    Writes three tables (overlap per k with chance level, ratio and a random-mask baseline;
    Grassmannian distances on a grid of k; the spectrum with curvature concentration) and a
    JSON summary at ``report_k``. With a certificate (sketched eigenpairs), every row says
    whether its k is certified (pairs ``1..k`` all within the certificate's tolerance), and the
    summary carries the verdict; without one (exact eigenpairs) every k is certified.
    """
    theta = Trajectory.open(trajectory_path).params(step)
    dim, kmax = eigenpair_dims(eigenpairs_path)
    if dim != theta.numel():
        raise HessketchError(
            f"{eigenpairs_path} has D={dim}, but step {step} of {trajectory_path} has "
            f"{theta.numel()} parameters"
        )
    if not 1 <= report_k <= kmax:
        raise HessketchError(
            f"overlap.report_k={report_k} must be within 1..{kmax} (the eigenpairs held)"
        )
    # Only the rows of the top-K masks are needed: K×K blocks, whatever D is.
    order = magnitude_order(theta)[:kmax]
    gen = torch.Generator().manual_seed(random_mask_seed)
    random_order = torch.randperm(dim, generator=gen)[:kmax]
    check_eigenpairs_at(eigenpairs_path, theta, f"step {step} of {trajectory_path}")
    eigenvalues, mask_rows, attrs = read_eigenpairs(eigenpairs_path, rows=order)
    _, random_rows, _ = read_eigenpairs(eigenpairs_path, rows=random_order)
    trusted_k, verdict = kmax, "exact eigendecomposition (dense float64 Hessian)"
    if certificate_path is not None:
        certificate = read_json(certificate_path, "certificate")
        if certificate.get("step") != step:
            raise HessketchError(
                f"{certificate_path} certifies step {certificate.get('step')}, not step {step}"
            )
        trusted_k, verdict = certificate["trusted_k"], certificate["verdict"]
    first = torch.arange(kmax)
    curve = mask_overlap_curve(mask_rows, first)
    random_curve = mask_overlap_curve(random_rows, first)
    rows = []
    for k in range(1, kmax + 1):
        chance = float(chance_overlap(k, dim))
        rows.append(
            {
                "k": k,
                "overlap": float(curve[k - 1]),
                "chance": chance,
                "ratio": float(curve[k - 1]) / chance,
                "random_mask_overlap": float(random_curve[k - 1]),
                "certified": int(k <= trusted_k),
            }
        )
    tables = {Path(overlap_path).name: write_table(overlap_path, rows)}
    dist_rows = []
    for k in distance_grid(kmax, (report_k,)):
        angles = mask_principal_angles(mask_rows[:, :k], first[:k])
        dist_rows.append({"k": k, **grassmann_distances(angles)})
    tables[Path(distances_path).name] = write_table(distances_path, dist_rows)
    frob = attrs.get("frobenius_sq") or attrs.get("frobenius_sq_estimate")
    concentration = curvature_concentration(eigenvalues, frob) if frob else None
    tables[Path(spectrum_path).name] = write_table(
        spectrum_path,
        [
            {
                "rank": i + 1,
                "eigenvalue": float(v),
                "magnitude": abs(float(v)),
                "concentration": float(concentration[i])
                if concentration is not None
                else float("nan"),
                "certified": int(i < trusted_k),
            }
            for i, v in enumerate(eigenvalues)
        ],
    )
    summary = {
        "method": attrs["method"],
        "step": step,
        "dim": dim,
        "k": report_k,
        "overlap": rows[report_k - 1]["overlap"],
        "chance": rows[report_k - 1]["chance"],
        "ratio": rows[report_k - 1]["ratio"],
        "concentration": float(concentration[report_k - 1]) if concentration is not None else None,
        "frobenius_sq": frob,
        "trusted_k": trusted_k,
        "certified": report_k <= trusted_k,
        "verdict": verdict,
        "tables": tables,  # SHA-256 of each table beside this summary (read_table checks)
    }
    write_json_atomic(summary_path, summary)
    if report_k > trusted_k:
        log.warning(
            "step %d (%s): the overlap at k=%d is NOT certified (%s)",
            step,
            attrs["method"],
            report_k,
            verdict,
        )
    log.info(
        "step %d (%s): overlap at k=%d is %.4f, chance %.5f, ratio %.1f",
        step,
        attrs["method"],
        report_k,
        summary["overlap"],
        summary["chance"],
        summary["ratio"],
    )
