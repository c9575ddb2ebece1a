"""Stage ``plot_*``: the paper's figures, drawn from the tables of earlier stages alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt
import numpy as np
import torch

from hessketch.density import SpectralDensity
from hessketch.pipeline.common import read_table
from hessketch.store import read_json

__all__ = [
    "FigureStyle",
    "plot_overlap_over_training",
    "plot_overlap_vs_k",
    "plot_spectra",
    "plot_spectral_density",
    "plot_training_curves",
]

COLORS = {
    "sketched": "tab:blue",
    "exact": "black",
    "chance": "tab:gray",
    "random": "tab:orange",
    "uncertified": "tab:red",
}


@dataclass(frozen=True)
class FigureStyle:
    """Plot-only settings: changing them reruns the plots and nothing else."""

    width: float = 5.0
    height: float = 3.4
    dpi: int = 150
    font_size: float = 9.0


def _save(fig: plt.Figure, outputs: list[str | Path], style: FigureStyle) -> None:
    fig.tight_layout()
    for out in outputs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=style.dpi)
    plt.close(fig)


def _figure(style: FigureStyle, ncols: int = 1) -> tuple[plt.Figure, np.ndarray]:
    plt.rcParams.update({"font.size": style.font_size})
    fig, axes = plt.subplots(1, ncols, figsize=(style.width * ncols, style.height), squeeze=False)
    return fig, axes[0]


BySet = Mapping[str, Mapping[int, str | Path]]  # Hessian set → step → file


def _panels(style: FigureStyle, sketched: BySet) -> tuple[plt.Figure, list[tuple[str, plt.Axes]]]:
    """One panel per Hessian set, side by side (train and test, as in the paper)."""
    names = list(sketched)
    fig, axes = _figure(style, ncols=max(1, len(names)))
    return fig, list(zip(names, axes, strict=False))


def plot_overlap_over_training(
    sketched: BySet,
    exact: BySet,
    outputs: list[str | Path],
    style: FigureStyle,
) -> None:
    """Overlap at the reported k over training steps: sketched, exact, and chance (paper Fig. 1).

    ``sketched``/``exact`` map each Hessian set to steps to the JSON summaries of
    ``compute_overlap``; each set gets its own panel.
    """
    fig, panels = _panels(style, sketched)
    for name, ax in panels:
        _overlap_over_training(ax, sketched[name], exact.get(name, {}))
        ax.set_title(f"{name} Hessian: {ax.get_title()}", fontsize="medium")
    _save(fig, outputs, style)


def _overlap_over_training(
    ax: plt.Axes, sketched: Mapping[int, str | Path], exact: Mapping[int, str | Path]
) -> None:
    k = dim = None
    for method, paths in (("sketched", sketched), ("exact", exact)):
        if not paths:
            continue
        rows = [read_json(paths[s], "overlap summary") for s in sorted(paths)]
        k, dim = rows[0]["k"], rows[0]["dim"]
        ax.plot(
            sorted(paths),
            [r["overlap"] for r in rows],
            marker="o" if method == "exact" else ".",
            ls="--" if method == "exact" else "-",
            color=COLORS[method],
            label=method,
        )
        steps = sorted(paths)
        if method == "sketched" and all("overlap_low" in r for r in rows):
            # the interval that provably holds (certificate's assumptions), as error bars
            overlap = np.array([r["overlap"] for r in rows])
            low = np.array([r["overlap_low"] for r in rows])
            high = np.array([r["overlap_high"] for r in rows])
            ax.errorbar(
                steps,
                overlap,
                yerr=[overlap - low, high - overlap],
                fmt="none",
                ecolor=COLORS[method],
                alpha=0.5,
                capsize=2,
                label="interval (provable bound)",
            )
        doubtful = [i for i, r in enumerate(rows) if not r.get("certified", True)]
        if doubtful:
            ax.plot(
                [steps[i] for i in doubtful],
                [rows[i]["overlap"] for i in doubtful],
                ls="none",
                marker="x",
                ms=8,
                color=COLORS["uncertified"],
                label=f"{method}, not certified at k = {rows[0]['k']}",
            )
    if k is not None:
        ax.axhline(k / dim, color=COLORS["chance"], ls=":", label=f"chance k/D = {k / dim:.4f}")
        ax.set_title(f"top-{k} eigenspace vs. magnitude mask, D = {dim:,}", fontsize="medium")
    ax.set_xlabel("training step")
    ax.set_ylabel("overlap")
    ax.set_yscale("log")
    ax.legend()


def _per_step_curves(
    ax: plt.Axes,
    sketched: Mapping[int, str | Path],
    exact: Mapping[int, str | Path],
    steps: list[int],
    x: str,
    y: str,
) -> float:
    """Column ``y`` against ``x`` per step: sketched solid, exact dashed, one color per step.

    Sketched rows beyond the certified prefix (column ``certified``) are drawn in red, dotted,
    ending in a cross at the first uncertified row. Where the table has the interval
    ``{y}_low``, ``{y}_high``, it is drawn as a band where its lower edge is above 0 (an
    interval reaching 0 says nothing a log axis could show; those rows are the red ones).
    Returns the smallest positive ``y`` drawn, for the axis limits.
    """
    cmap = plt.get_cmap("viridis")
    marked = False
    smallest = np.inf
    for i, step in enumerate(steps):
        color = cmap(i / max(1, len(steps) - 1))
        table = read_table(sketched[step])
        positive = table[y][table[y] > 0]
        smallest = min(smallest, float(positive.min()) if positive.size else np.inf)
        if f"{y}_low" in table:
            ax.fill_between(
                table[x],
                table[f"{y}_low"],
                table[f"{y}_high"],
                where=table[f"{y}_low"] > 0,
                color=color,
                alpha=0.2,
                lw=0,
                label="interval (provable bound)" if i == 0 else None,
            )
        good = table["certified"] == 1 if "certified" in table else np.ones(len(table[x]), bool)
        ax.plot(table[x][good], table[y][good], color=color, label=f"step {step}")
        if not good.all():
            first = int(np.argmin(good))
            label = None if marked else "not certified"
            ax.plot(table[x][first:], table[y][first:], color=COLORS["uncertified"], ls=":")
            ax.plot(table[x][first], table[y][first], "x", color=COLORS["uncertified"], label=label)
            marked = True
        if step in exact:
            ref = read_table(exact[step])
            ax.plot(ref[x], ref[y], color=color, ls="--", lw=0.8)
    return smallest


def plot_overlap_vs_k(
    sketched: BySet,
    exact: BySet,
    outputs: list[str | Path],
    style: FigureStyle,
) -> None:
    """Overlap against k at selected steps and chance k/D (log–log), one panel per set."""
    fig, panels = _panels(style, sketched)
    for name, ax in panels:
        steps = sorted(sketched[name])
        low = _per_step_curves(ax, sketched[name], exact.get(name, {}), steps, "k", "overlap")
        if steps:
            table = read_table(sketched[name][steps[0]])
            ax.plot(table["k"], table["chance"], color=COLORS["chance"], ls=":", label="chance k/D")
            low = min(low, float(table["chance"].min()))
        ax.set_xscale("log")
        ax.set_yscale("log")
        if np.isfinite(low):  # the curves decide the range, not bands reaching to 0
            ax.set_ylim(low / 2, 1.2)
        ax.set_xlabel("k")
        ax.set_ylabel("overlap (dashed: exact; band: interval)")
        ax.set_title(f"{name} Hessian", fontsize="medium")
        ax.legend(fontsize="small")
    _save(fig, outputs, style)


def plot_spectra(
    sketched: BySet,
    exact: BySet,
    outputs: list[str | Path],
    style: FigureStyle,
) -> None:
    """Sketched against exact eigenvalue magnitudes by rank, one panel per Hessian set.

    Drawn at the steps that have both methods (else at every sketched step).
    """
    fig, panels = _panels(style, sketched)
    for name, ax in panels:
        ours, ref = sketched[name], exact.get(name, {})
        steps = sorted(set(ours) & set(ref)) or sorted(ours)
        _per_step_curves(ax, ours, ref, steps, "rank", "magnitude")
        ax.set_yscale("log")
        ax.set_xlabel("rank (by |λ|)")
        ax.set_ylabel("|λ| (sketched solid, exact dashed)")
        ax.set_title(f"{name} Hessian", fontsize="medium")
        ax.legend(fontsize="small")
    _save(fig, outputs, style)


def plot_spectral_density(
    densities: BySet,
    spectra: BySet,
    outputs: list[str | Path],
    style: FigureStyle,
) -> None:
    """The SLQ density of the whole spectrum per step, the sketched top-k eigenvalues marked.

    One panel per Hessian set; a symmetric-log eigenvalue axis (linear within 1e-3 of the
    largest |λ|), a Gaussian kernel of 1 % of the spectral width, log density. Below the
    curves, a tick per sketched eigenvalue (certified pairs dark, the others light).
    """
    fig, panels = _panels(style, densities)
    cmap = plt.get_cmap("viridis")
    for name, ax in panels:
        steps = sorted(densities[name])
        for i, step in enumerate(steps):
            color = cmap(i / max(1, len(steps) - 1))
            record = read_json(densities[name][step], "spectral density")
            density = SpectralDensity(
                torch.tensor(record["nodes"]), torch.tensor(record["weights"]), record["dim"]
            )
            atoms, _ = density.measure()
            low, high = float(atoms.min()), float(atoms.max())
            width = max(high - low, 1e-30)
            grid = torch.linspace(low - 0.05 * width, high + 0.05 * width, 2000)
            curve = density.smoothed(grid.double(), sigma=0.01 * width).numpy()
            label = (
                f"step {step}: tr ≈ {record['slq_trace']:.3g} "
                f"(Hutch++ {record['hutchpp_trace']:.3g} ± {record['hutchpp_standard_error']:.1g})"
            )
            ax.plot(grid.numpy(), np.maximum(curve, 1e-12), color=color, label=label)
            if step in spectra.get(name, {}):
                table = read_table(spectra[name][step])
                marks = table["eigenvalue"]
                good = table["certified"] == 1
                y = np.full(marks.shape, 1e-11 * (3**i))
                ax.plot(marks[good], y[good], "|", color=color, ms=6)
                ax.plot(marks[~good], y[~good], "|", color=color, ms=6, alpha=0.3)
            scale = max(abs(low), abs(high))
        linthresh = 1e-3 * scale if steps else 1e-3
        ax.set_xscale("symlog", linthresh=linthresh)
        decades = [10.0**e for e in range(-12, 13) if 10 * linthresh <= 10.0**e <= 10 * scale]
        ax.set_xticks([-d for d in reversed(decades)] + [0.0] + decades)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-12)
        ax.set_xlabel("eigenvalue (symlog)")
        ax.set_ylabel("density (ticks: sketched top-k)")
        ax.set_title(f"{name} Hessian", fontsize="medium")
        ax.legend(fontsize="x-small")
    _save(fig, outputs, style)


def plot_training_curves(
    metrics: str | Path, outputs: list[str | Path], style: FigureStyle
) -> None:
    """Loss and accuracy on the train and test splits over training."""
    table = read_table(metrics)
    fig, (ax_loss, ax_acc) = _figure(style, ncols=2)
    for split, ls in (("train", "-"), ("test", "--")):
        ax_loss.plot(table["step"], table[f"{split}_loss"], ls=ls, label=split)
        ax_acc.plot(table["step"], table[f"{split}_accuracy"], ls=ls, label=split)
    ax_loss.set_ylabel("mean cross-entropy")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("training step")
        ax.legend()
    _save(fig, outputs, style)
