"""Rows of the results: TSV (every number) and markdown (the README's columns)."""

from __future__ import annotations

import math
from typing import Any

from eigbench.problems import Problem


def config_label(method: str, config: dict[str, Any]) -> str:
    """A short description of a method's configuration."""
    c = config
    if method == "exact":
        return "float64 dense + eigh"
    if method.startswith("eigsh"):
        iface = f" {c['interface']}" if "interface" in c else ""
        return f"k={c['k']} tol={c['tol']:g}{iface}"
    if method.startswith("hessketch"):
        label = f"k={c['k']} s={c['s']} {c['test_matrix']}"
        if c["passes"] == 1:
            return label
        return f"k={c['k']} passes={c['passes']} width={c.get('width') or c['s']}"
    if method == "skerch":
        return f"outer={c['outer']} {c['noise']} {c['recovery']}"
    if method == "pyhessian":
        return f"top {c['top_n']}, maxIter={c['max_iter']} tol={c['tol']:g}"
    return str(c)


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def certificate_label(info: dict[str, Any]) -> str:
    """``trusted/pairs certified`` (or the failed verdict), ``n/a`` without a certificate.

    The full verdict is in the TSV's ``verdict`` column.
    """
    if "verdict" not in info:
        return "n/a"
    if info["verdict"].startswith("UNTRUSTWORTHY"):
        return "untrustworthy"
    return f"{info['trusted_k']}/{info['certified_of']} certified"


def markdown(problem: Problem, rows: list[dict[str, Any]], mask_ks: tuple[int, ...]) -> str:
    """The results of one problem as a markdown table."""
    mask_heads = [f"mask err k={k}" for k in mask_ks]
    head = [
        "step",
        "method",
        "config",
        "wall s",
        "cores",
        "HVPs",
        "peak RSS MB",
        "λ top-10 max err",
        "λ top-10 med err",
        "λ top-100 med err",
        "overlap top-10",
        "overlap top-k",
        *mask_heads,
        "certificate",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            cells = [str(r["step"]), r["method"], r["config"], r["status"]]
            cells += [""] * (len(head) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        is_ref = bool(r.get("is_reference"))

        def err(value: Any, fmt: str, is_ref: bool = is_ref) -> str:
            return "ref" if is_ref else _num(value, fmt)

        cells = [
            str(r["step"]),
            r["method"],
            r["config"],
            _num(r["wall_s"], ".1f" if r["wall_s"] >= 10 else ".2f"),
            _num(r["cpu_s"] / r["wall_s"] if r["wall_s"] else None, ".1f"),
            str(r["hvps"]),
            _num(r["peak_rss_mb"], ".0f"),
            err(r.get("top10_max_rel"), ".1e"),
            err(r.get("top10_median_rel"), ".1e"),
            err(r.get("top100_median_rel"), ".1e"),
            err(r.get("overlap_top10"), ".4f"),
            err(r.get("overlap_topk"), ".4f") + ("" if is_ref else f" (k={r['k_compared']})"),
            *[err(r.get(f"mask_err_k{k}"), ".1e") for k in mask_ks],
            r["certificate"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tsv_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with one shared set of columns (missing values empty)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return [{k: ("" if r.get(k) is None else r.get(k, "")) for k in keys} for r in rows]
