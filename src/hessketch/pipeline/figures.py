"""Stage ``plot_*``: the paper's figures, drawn from the tables of earlier stages alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt
import numpy as np

from hessketch.pipeline.common import read_table
from hessketch.store import read_json

__all__ = [
    "FigureStyle",
    "plot_overlap_over_training",
    "plot_overlap_vs_k",
    "plot_spectra",
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
                label="certified interval",
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
) -> None:
    """Column ``y`` against ``x`` per step: sketched solid, exact dashed, one color per step.

    Sketched rows beyond the certified prefix (column ``certified``) are drawn in red, dotted,
    ending in a cross at the first uncertified row. Where the table has the interval
    ``{y}_low``, ``{y}_high``, it is drawn as a band.
    """
    cmap = plt.get_cmap("viridis")
    marked = False
    for i, step in enumerate(steps):
        color = cmap(i / max(1, len(steps) - 1))
        table = read_table(sketched[step])
        if f"{y}_low" in table:
            ax.fill_between(
                table[x],
                np.maximum(table[f"{y}_low"], np.finfo(float).tiny),
                table[f"{y}_high"],
                color=color,
                alpha=0.2,
                lw=0,
                label="certified interval" if i == 0 else None,
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
        _per_step_curves(ax, sketched[name], exact.get(name, {}), steps, "k", "overlap")
        if steps:
            table = read_table(sketched[name][steps[0]])
            ax.plot(table["k"], table["chance"], color=COLORS["chance"], ls=":", label="chance k/D")
        ax.set_xscale("log")
        ax.set_yscale("log")
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
