"""Stage of rule study_overview: the study at one glance, for the landing page of the report.

One HTML fragment (no scripts, inline styles only) that ``snakemake --report`` shows twice: on
its landing page (``workflow/report/workflow.rst`` embeds it) and as the result "overview.html".
It is drawn from the study's own tables and JSON files alone (no HVP, no eigenvector):

- the study: model and its parameter count D, data, training, Hessian sets and steps, the
  eigensolver and its sizes;
- the certificate of every Hessian (set, step, method): the certified space ``space_k``, the
  trusted pairs, the overlap at ``overlap.report_k`` with its interval, the ratio to chance
  with its interval, and the certificate's verdict in its own words; a row whose top-k space is
  not certified is marked as such;
- the sketched result against the dense exact one, where the study has exact steps;
- the costs: HVPs, measurement and reduction seconds, devices and hosts of the shards;
- the end of training (losses and accuracies).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hessketch.pipeline.common import read_table
from hessketch.store import fresh_temporary, read_json

__all__ = ["write_overview"]

log = logging.getLogger(__name__)

BySet = Mapping[str, Mapping[int, str | Path]]  # Hessian set → step → file

CERTIFIED = "#1a7f37"  # green: the top-k space is certified
NOT_CERTIFIED = "#b42318"  # red: it is not; its interval still holds, it is only wide
TABLE = "border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em"
CELL = "border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top"
HEAD = CELL + ";background:#f6f8fa"


def write_overview(
    *,
    study: Mapping[str, Any],
    sketched: BySet,
    exact: BySet,
    reports: BySet,
    comparisons: Mapping[str, str | Path],
    metrics_path: str | Path,
    overview_path: str | Path,
) -> None:
    """Write the study's overview (HTML fragment) from its summaries, reports and tables.

    Args:
        study: The study's config sections (``run``, ``model``, ``data``, ``training``,
            ``hessian``, ``sketch``, ``overlap``): what the overview says the study is.
        sketched: Set → step → overlap summary (``summary.json``) of the sketched method.
        exact: The same for the dense exact method (may be empty).
        reports: Set → step → the sketched method's ``report.json`` (HVPs, seconds, devices).
        comparisons: Set → its ``comparison.tsv`` (only sets with exact steps).
        metrics_path: ``train/metrics.tsv``.
        overview_path: Where the HTML fragment goes.

    Raises:
        IntegrityError: A table does not match the digest its summary records.
    """
    summaries = {
        method: {
            hset: {int(step): read_json(path, "overlap summary") for step, path in steps.items()}
            for hset, steps in by_set.items()
        }
        for method, by_set in (("sketched", sketched), ("exact", exact))
    }
    dims = {s["dim"] for m in summaries.values() for steps in m.values() for s in steps.values()}
    parts = [
        # on the report's landing page, the text column (Tailwind's max-w-lg) widens for it
        "<style>.prose:has(.hessketch-overview){max-width:72rem}</style>",
        '<div class="hessketch-overview" style="font-family:sans-serif;line-height:1.4">',
        _study(study, dims),
        "<h3>Certificates</h3>",
        _certificates(summaries),
    ]
    if comparisons:
        parts += ["<h3>Against the dense exact Hessian</h3>", _comparisons(comparisons)]
    parts += ["<h3>Costs</h3>", _costs(reports)]
    parts += ["<h3>Training</h3>", _training(metrics_path), "</div>"]
    path = Path(overview_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temporary(path)
    tmp.write_text("\n".join(parts) + "\n")
    os.replace(tmp, path)
    verdicts = [
        (hset, step, method, s["certified"])
        for method, by_set in summaries.items()
        for hset, steps in by_set.items()
        for step, s in steps.items()
    ]
    log.info(
        "overview of %s: %d Hessians, %d with a certified top-%s space",
        study.get("run"),
        len(verdicts),
        sum(c for *_, c in verdicts),
        study.get("overlap", {}).get("report_k"),
    )


def _study(study: Mapping[str, Any], dims: set[int]) -> str:
    model = dict(study["model"])
    name = model.pop("name")
    args = ", ".join(f"{key}={value}" for key, value in model.items())
    data, train, hess, sketch = study["data"], study["training"], study["hessian"], study["sketch"]
    size = f", {data['image_size']}×{data['image_size']}" if data.get("image_size") else ""
    dim = ", ".join(f"{d:,}" for d in sorted(dims)) or "?"
    passes = sketch.get("passes", 1)
    if passes == 1:
        method = (
            f"one-pass sketched eigendecomposition (SEIGH), k = {sketch['k']}, "
            f"s = {sketch['s']} ({sketch.get('test_matrix', 'ssrft')} test matrix)"
        )
    else:
        budget = f", at most {sketch['max_hvps']} HVPs" if sketch.get("max_hvps") else ""
        method = f"block Krylov, k = {sketch['k']}, {passes} waves of HVPs{budget}"
    sets = ", ".join(f"{name} ({n} points)" for name, n in hess["sets"].items())
    rows = [
        ("model", f"{name}({args})" if args else name),
        ("parameters D", dim),
        ("data", f"{data['dataset']}{size}"),
        (
            "training",
            f"SGD, {train['steps']} steps, lr {train['lr']}, batch {train['batch_size']}, "
            f"seed {train['seed']}",
        ),
        ("curvature", hess.get("curvature", "hessian")),
        ("Hessian sets", sets),
        ("steps", ", ".join(str(t) for t in hess["steps"])),
        ("eigensolver", f"{method}, {sketch.get('shards', 1)} measurement shards"),
        ("overlap reported at", f"k = {study['overlap']['report_k']}"),
    ]
    return f"<h3>Configuration of {_e(study['run'])}</h3>" + _table(("", ""), rows, head=False)


def _certificates(summaries: Mapping[str, Mapping[str, Mapping[int, dict]]]) -> str:
    header = (
        "set",
        "step",
        "method",
        "certified space: k ≤",
        "trusted pairs",
        "overlap at k [interval]",
        "ratio to chance [interval]",
        "vs chance",
        "verdict",
    )
    rows, colors = [], []
    for method, by_set in summaries.items():
        for hset, steps in by_set.items():
            for step, s in sorted(steps.items()):
                certified = bool(s["certified"])
                rows.append(
                    (
                        hset,
                        str(step),
                        method,
                        str(s.get("space_k", "—")),
                        str(s.get("trusted_k", "—")),
                        f"{s['overlap']:.4f} [{s['overlap_low']:.4f}, {s['overlap_high']:.4f}]",
                        f"{s['ratio']:.2f} [{s['ratio_low']:.2f}, {s['ratio_high']:.2f}]",
                        str(s.get("vs_chance", "—")),
                        ("certified: " if certified else "NOT certified: ") + str(s["verdict"]),
                    )
                )
                colors.append(CERTIFIED if certified else NOT_CERTIFIED)
    return _table(header, rows, colors=colors)


def _comparisons(comparisons: Mapping[str, str | Path]) -> str:
    header = (
        "set",
        "step",
        "overlap sketched [interval]",
        "overlap exact",
        "exact inside",
        "k outside",
        "eigenspace overlap",
        "max rel. eigenvalue error",
    )
    rows, colors = [], []
    for hset, path in comparisons.items():
        table = read_table(path)
        worst = next(c for c in table if c.startswith("max_rel_error_top"))
        for i in range(len(table["step"])):
            inside = bool(table["exact_inside"][i]) and int(table["k_outside"][i]) == 0
            rows.append(
                (
                    hset,
                    str(int(table["step"][i])),
                    f"{table['overlap_sketched'][i]:.4f} [{table['overlap_low'][i]:.4f}, "
                    f"{table['overlap_high'][i]:.4f}]",
                    f"{table['overlap_exact'][i]:.4f}",
                    "yes" if bool(table["exact_inside"][i]) else "NO",
                    f"{int(table['k_outside'][i])} of {int(table['k_compared'][i])}",
                    f"{table['eigenspace_overlap'][i]:.4f}",
                    f"{table[worst][i]:.2e} (top {worst.removeprefix('max_rel_error_top')})",
                )
            )
            colors.append(CERTIFIED if inside else NOT_CERTIFIED)
    return _table(header, rows, colors=colors)


def _costs(reports: BySet) -> str:
    header = ("set", "step", "HVPs", "measure s", "reduce s", "devices", "hosts")
    rows = []
    for hset, steps in reports.items():
        for step, path in sorted(steps.items(), key=lambda item: int(item[0])):
            report = read_json(path, "report")
            shards = report.get("shards", [])
            devices = sorted({str(s.get("device")) for s in shards}) or ["—"]
            hosts = sorted({str(s.get("host")) for s in shards}) or ["—"]
            rows.append(
                (
                    hset,
                    str(step),
                    f"{report['hvps']:,}",
                    f"{report['measure_seconds']:.1f}",
                    f"{report['reduce_seconds']:.1f}",
                    ", ".join(devices),
                    ", ".join(hosts),
                )
            )
    return _table(header, rows)


def _training(metrics_path: str | Path) -> str:
    table = read_table(metrics_path)
    last = {name: values[-1] for name, values in table.items()}
    rows = [
        ("steps", str(int(last["step"]))),
        ("train loss / accuracy", f"{last['train_loss']:.4f} / {last['train_accuracy']:.4f}"),
        ("test loss / accuracy", f"{last['test_loss']:.4f} / {last['test_accuracy']:.4f}"),
        ("seconds", f"{last['seconds']:.1f}"),
    ]
    return _table(("", ""), rows, head=False)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    head: bool = True,
    colors: Sequence[str] | None = None,
) -> str:
    out = [f'<table style="{TABLE}">']
    if head:
        out.append("<tr>" + "".join(f'<th style="{HEAD}">{_e(h)}</th>' for h in header) + "</tr>")
    for i, row in enumerate(rows):
        color = f";color:{colors[i]};min-width:24em" if colors else ""
        cells = [
            f'<td style="{CELL}{color if j == len(row) - 1 else ""}">{_e(c)}</td>'
            for j, c in enumerate(row)
        ]
        if not head:
            cells[0] = f'<th style="{HEAD}">{_e(row[0])}</th>'
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _e(text: Any) -> str:
    return html.escape(str(text))
