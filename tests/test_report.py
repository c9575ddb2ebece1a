"""The study overview and the report's landing page, on the tiny run (tests/conftest.py).

The overview (rule study_overview, hessketch.pipeline.overview) must list every Hessian with
the verdict and the interval of its summary, and the costs of its report; `snakemake --report`
must embed it in its landing page. Where Chromium is installed, the page is also rendered
(tools/report_screenshot.py) and its rendered text checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from workflow_helpers import REPO, RUN, snakemake


class Tables(HTMLParser):
    """The text of every table cell, table by table, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _summaries(root: Path) -> dict[tuple[str, int, str], dict]:
    found = {}
    for path in root.glob("hessian/set~*/step~*/method~*/summary.json"):
        hset = path.parents[2].name.removeprefix("set~")
        step = int(path.parents[1].name.removeprefix("step~"))
        found[hset, step, path.parent.name.removeprefix("method~")] = json.loads(path.read_text())
    return found


@pytest.fixture(scope="module")
def overview(tiny_run) -> tuple[Path, list[list[list[str]]]]:
    workdir, _ = tiny_run
    parser = Tables()
    parser.feed((workdir / RUN / "overview.html").read_text())
    return workdir, parser.tables


def test_the_overview_has_the_verdict_and_interval_of_every_hessian(overview) -> None:
    workdir, tables = overview
    summaries = _summaries(workdir / RUN)
    assert len(summaries) == 8  # 2 sets × 2 steps × (sketched, exact)
    certificates = next(t for t in tables if t[0][:3] == ["set", "step", "method"])
    rows = {(r[0], int(r[1]), r[2]): r for r in certificates[1:]}
    assert set(rows) == set(summaries)
    for key, s in summaries.items():
        row = rows[key]
        assert row[3] == str(s["space_k"]), (key, row)
        assert row[4] == str(s["trusted_k"])
        assert row[5] == f"{s['overlap']:.4f} [{s['overlap_low']:.4f}, {s['overlap_high']:.4f}]"
        assert row[6] == f"{s['ratio']:.2f} [{s['ratio_low']:.2f}, {s['ratio_high']:.2f}]"
        verdict = ("certified: " if s["certified"] else "NOT certified: ") + s["verdict"]
        assert row[8] == verdict, (key, row)


def test_the_overview_has_the_costs_of_every_sketched_hessian(overview) -> None:
    workdir, tables = overview
    costs = next(t for t in tables if t[0][:3] == ["set", "step", "HVPs"])
    reports = sorted((workdir / RUN).glob("hessian/set~*/step~*/method~sketched/report.json"))
    assert len(costs) - 1 == len(reports) == 4
    rows = {(r[0], int(r[1])): r for r in costs[1:]}
    for path in reports:
        report = json.loads(path.read_text())
        hset = path.parents[2].name.removeprefix("set~")
        row = rows[hset, int(path.parents[1].name.removeprefix("step~"))]
        assert row[2] == f"{report['hvps']:,}"
        assert row[5] == ", ".join(sorted({s["device"] for s in report["shards"]}))


def test_the_overview_compares_with_the_exact_hessian(overview) -> None:
    _, tables = overview
    compared = next(t for t in tables if t[0][:3] == ["set", "step", "overlap sketched [interval]"])
    assert len(compared) - 1 == 4  # 2 sets × the 2 exact steps
    assert all(row[4] == "yes" and row[5].startswith("0 of") for row in compared[1:])


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory) -> Path:
    workdir, config = tiny_run
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = snakemake(workdir, "--report", str(path), config=config)
    assert result.returncode == 0, result.stderr[-4000:]
    return path


def test_the_landing_page_embeds_the_overview(report: Path) -> None:
    text = report.read_text()
    assert "hessketch study" in text
    # the overview's fragment, within the report's data (its quotes JSON-escaped)
    for words in ("hessketch-overview", "Certificates", "Costs", "NOT certified|certified: "):
        assert re.search(words, text), words


@pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium here (apt-get install chromium)",
)
def test_the_landing_page_renders_in_chromium(report: Path) -> None:
    shot = report.with_name("landing.png")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "report_screenshot.py"),
            str(report),
            "--out",
            str(shot),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
