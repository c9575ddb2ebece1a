"""Stage ``compute_overlap``: mask overlaps, Grassmannian distances, spectrum tables.

Every overlap carries an interval that contains the true overlap (:mod:`hessketch.spacebound`),
from the certificate's bound on the top-``k`` space; exact eigenpairs (a dense float64
Hessian) give intervals of their float32 storage's width. The ratio to chance is called
"above" or "below" chance only where the interval excludes chance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from hessketch.certificate import FLOAT32_ROUNDING
from hessketch.errors import HessketchError
from hessketch.hessian import HessianOperator, ggn_diagonal
from hessketch.masks import MASKS, MaskContext, block_rows, mask_problems
from hessketch.masks import column as mask_column
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
    eigenpair_row_blocks,
    read_eigenpairs,
    write_table,
)
from hessketch.pipeline.hessian_set import read_hessian_set
from hessketch.provenance import hessian_facts
from hessketch.spacebound import chance_verdict, overlap_interval
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
    points_path: str | Path | None = None,
    masks: Sequence[str] = ("random", "best"),
    random_masks: int = 10,
) -> None:
    """Overlap of the top-k eigenspace with the top-k magnitude mask for every k, and more.

    Writes three tables (overlap per k with its interval, chance level, ratio and its
    interval, a random-mask baseline; Grassmannian distances on a grid of k; the spectrum with
    curvature concentration) and a JSON summary at ``report_k``. With a certificate (sketched
    eigenpairs), every row carries the bound on its top-k space, whether that is certified
    (``certified``: within the certificate's space tolerance) and whether pairs ``1..k`` are
    (``pairs_certified``); without one (exact eigenpairs) every k is certified.

    ``masks`` names registered masks (:mod:`hessketch.masks`) compared beside the magnitude
    mask, each with its interval; those that need the loss gradient or the GGN diagonal read
    the Hessian set ``points_path``.
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
    check_eigenpairs_at(eigenpairs_path, theta, f"step {step} of {trajectory_path}")
    eigenvalues, mask_rows, attrs = read_eigenpairs(eigenpairs_path, rows=order)
    space = _space_of(certificate_path, step, kmax)
    trusted_k, verdict = space["trusted_k"], space["verdict"]
    first = torch.arange(kmax)
    curve = mask_overlap_curve(mask_rows, first)

    def interval(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return overlap_interval(
            c, space["bounds"], orthonormality=space["orthonormality"], rounding=space["rounding"]
        )

    low, high = interval(curve)
    others = _other_masks(
        masks,
        MaskContext(
            theta=theta,
            kmax=kmax,
            rows=lambda idx: read_eigenpairs(eigenpairs_path, rows=idx)[1],
            row_blocks=lambda: eigenpair_row_blocks(eigenpairs_path, block_rows(kmax)),
            interval=interval,
            seed=random_mask_seed,
            random_masks=random_masks,
            **_set_quantities(trajectory_path, step, points_path),
        ),
    )
    certified = space["certified"]
    rows = []
    for k in range(1, kmax + 1):
        chance = float(chance_overlap(k, dim))
        rows.append(
            {
                "k": k,
                "overlap": float(curve[k - 1]),
                "overlap_low": float(low[k - 1]),
                "overlap_high": float(high[k - 1]),
                "chance": chance,
                "ratio": float(curve[k - 1]) / chance,
                "ratio_low": float(low[k - 1]) / chance,
                "ratio_high": float(high[k - 1]) / chance,
                "vs_chance": chance_verdict(float(low[k - 1]), float(high[k - 1]), chance),
                "space_bound": float(space["bounds"][k - 1]),
                **{name: float(values[k - 1]) for name, values in others.items()},
                "certified": int(certified[k - 1]),
                "pairs_certified": int(k <= trusted_k),
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
    at = rows[report_k - 1]
    summary = {
        "method": attrs["method"],
        "step": step,
        "identity": {**hessian_facts(attrs["provenance"]), "method": attrs["method"]},
        "dim": dim,
        "k": report_k,
        "overlap": at["overlap"],
        "overlap_low": at["overlap_low"],
        "overlap_high": at["overlap_high"],
        "chance": at["chance"],
        "ratio": at["ratio"],
        "ratio_low": at["ratio_low"],
        "ratio_high": at["ratio_high"],
        "vs_chance": at["vs_chance"],
        "space_bound": at["space_bound"],
        "space_k": space["space_k"],
        "space_tolerance": space["tolerance"],
        "masks": {name: at[name] for name in others},
        "concentration": float(concentration[report_k - 1]) if concentration is not None else None,
        "frobenius_sq": frob,
        "trusted_k": trusted_k,
        "certified": bool(at["certified"]),
        "verdict": verdict,
        "tables": tables,  # SHA-256 of each table beside this summary (read_table checks)
    }
    write_json_atomic(summary_path, summary)
    if not at["certified"]:
        log.warning(
            "step %d (%s): the top-%d space is NOT certified (bound %.3g > %g; %s); the overlap "
            "lies in [%.4g, %.4g]",
            step,
            attrs["method"],
            report_k,
            at["space_bound"],
            space["tolerance"],
            verdict,
            at["overlap_low"],
            at["overlap_high"],
        )
    log.info(
        "step %d (%s): overlap at k=%d is %.4f in [%.4f, %.4f], chance %.5f, ratio %.1f in "
        "[%.1f, %.1f]: %s chance",
        step,
        attrs["method"],
        report_k,
        at["overlap"],
        at["overlap_low"],
        at["overlap_high"],
        at["chance"],
        at["ratio"],
        at["ratio_low"],
        at["ratio_high"],
        at["vs_chance"],
    )


def _other_masks(names: Sequence[str], context: MaskContext) -> dict[str, torch.Tensor]:
    """The overlap table's columns of the masks ``names``: curve, low, high, extras."""
    problems = mask_problems(list(names))
    if problems:
        raise HessketchError("; ".join(problems))
    out: dict[str, torch.Tensor] = {}
    for name in names:
        curves = MASKS[name](context)
        col = mask_column(name)
        out |= {col: curves.overlap, f"{col}_low": curves.low, f"{col}_high": curves.high}
        out |= curves.extra
    return out


def _set_quantities(
    trajectory_path: str | Path, step: int, points_path: str | Path | None
) -> dict[str, Callable[[], torch.Tensor] | None]:
    """Loss gradient and GGN diagonal over the Hessian set at ``step``, built on first use."""
    if points_path is None:
        return {"gradient_fn": None, "ggn_diagonal_fn": None}
    built: list[HessianOperator] = []

    def operator() -> HessianOperator:
        if not built:
            model, flat = Trajectory.open(trajectory_path).model(step)
            x, y, _ = read_hessian_set(points_path)
            built.append(HessianOperator(model, flat, x, y, check_determinism=False))
        return built[0]

    return {
        "gradient_fn": lambda: operator().gradient(),
        "ggn_diagonal_fn": lambda: ggn_diagonal(operator()),
    }


def _space_of(certificate_path: str | Path | None, step: int, kmax: int) -> dict:
    """The space bounds of ``kmax`` pairs from a certificate (``inf`` beyond its pairs).

    Without one (exact eigenpairs: float64, stored in float32) every bound is 0.
    """
    if certificate_path is None:
        return {
            "bounds": torch.zeros(kmax, dtype=torch.float64),
            "orthonormality": 0.0,
            "rounding": FLOAT32_ROUNDING,
            "tolerance": 0.0,
            "certified": torch.ones(kmax, dtype=torch.bool),
            "space_k": kmax,
            "trusted_k": kmax,
            "verdict": "exact eigendecomposition (dense float64 Hessian)",
        }
    certificate = read_json(certificate_path, "certificate")
    if certificate.get("step") != step:
        raise HessketchError(
            f"{certificate_path} certifies step {certificate.get('step')}, not step {step}"
        )
    known = [float(b) for b in certificate["space_bounds"]][:kmax]
    bounds = torch.full((kmax,), float("inf"), dtype=torch.float64)
    bounds[: len(known)] = torch.tensor(known, dtype=torch.float64)
    certified = torch.zeros(kmax, dtype=torch.bool)  # by the certificate: none if a check failed
    for first, last in certificate["certified_ranges"]:
        certified[first - 1 : min(last, kmax)] = True
    return {
        "certified": certified,
        "bounds": bounds,
        "orthonormality": certificate["orthonormality"],
        "rounding": certificate["rounding"],
        "tolerance": certificate["space_tolerance"],
        "space_k": certificate["space_k"],
        "trusted_k": certificate["trusted_k"],
        "verdict": certificate["verdict"],
    }
