"""Render a study's Snakemake report in headless Chromium: a screenshot of its landing page.

    python tools/report_screenshot.py results/<run>/report.html [--out PNG] [--width 1400]

The report is a single self-contained HTML file whose pages are drawn by JavaScript
(`snakemake --report results/<run>/report.html` writes it); this opens it in headless
Chromium (Debian: `apt-get install chromium`), lets its scripts run, saves a screenshot of
the landing page (default: beside the report, `report-landing.png`) and checks the rendered
page: the overview's tables (study, certificates, costs) must be in it, or the script fails
naming what is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# what the landing page must show once its scripts ran (workflow/report/workflow.rst and the
# overview of hessketch.pipeline.overview)
EXPECTED = ("hessketch study", "Certificates", "Costs", "Training", "Figures")


def chromium() -> str:
    """The path of a Chromium-like browser, or exit naming how to install one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        "no Chromium found (looked for " + ", ".join(BROWSERS) + "): install it, e.g. "
        "`apt-get install chromium` on Debian"
    )


def flags(width: int, height: int, profile: str) -> list[str]:
    """Headless flags that work as root in a container without a display or a GPU."""
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=20000",  # ms of page time for the report's scripts to draw
    ]


def render(report: Path, out: Path, width: int, height: int) -> str:
    """Save the screenshot to ``out``; return the rendered DOM."""
    browser, url = chromium(), report.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        base = [browser, *flags(width, height, profile)]
        shot = subprocess.run(
            [*base, f"--screenshot={out.resolve()}", url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if shot.returncode != 0 or not out.is_file():
            sys.exit(
                f"{browser} did not save {out} (exit {shot.returncode}):\n{shot.stderr[-2000:]}"
            )
        dom = subprocess.run(
            [*base, "--dump-dom", url], capture_output=True, text=True, timeout=180
        )
    return dom.stdout


def main(argv: list[str] | None = None) -> int:
    """Render the report given on the command line; exit non-zero naming what went wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report (snakemake --report FILE.html)")
    parser.add_argument("--out", type=Path, help="the screenshot (default: report-landing.png)")
    parser.add_argument("--width", type=int, default=1800)
    parser.add_argument("--height", type=int, default=2600)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        sys.exit(f"{args.report} does not exist: make it with `snakemake --report {args.report}`")
    out = args.out or args.report.with_name("report-landing.png")
    dom = render(args.report, out, args.width, args.height)
    missing = [text for text in EXPECTED if text not in dom]
    if missing:
        sys.exit(f"the rendered landing page of {args.report} lacks {missing}; screenshot: {out}")
    print(f"landing page of {args.report} rendered with {', '.join(EXPECTED)}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
