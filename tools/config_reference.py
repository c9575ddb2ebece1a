"""Write the key reference of config/README.md from workflow/schemas/config.schema.yaml.

    python tools/config_reference.py          # rewrite the reference in config/README.md
    python tools/config_reference.py --check  # exit 1 if it is out of date (the tests do this)

The reference lies between the two marker lines of config/README.md; the rest of that file is
written by hand. Each row is one key of the schema: its type, its default and its description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
README = REPO / "config" / "README.md"
BEGIN = "<!-- key reference: written by tools/config_reference.py from the schema -->"
END = "<!-- end of the key reference -->"


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind is None:
        kinds = [option.get("type", "?") for option in node.get("oneOf", node.get("anyOf", []))]
        kind = kinds or "any"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    return str(kind)


def _default(node: dict[str, Any], required: bool) -> str:
    if "default" not in node:
        return "required" if required else "—"
    if node["default"] == {}:  # a section: its keys have the defaults
        return "—"
    return f"`{json.dumps(node['default'], ensure_ascii=False)}`"


def rows(node: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key under ``node``, depth first."""
    found = []
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        text = " ".join((child.get("description") or "").split()).replace("|", "\\|")
        found.append((key, _type(child), _default(child, name in required), text))
        if "properties" in child:
            found += rows(child, key + ".")
    return found


def reference(schema: dict[str, Any]) -> str:
    """The Markdown table of every key of ``schema``."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, text in rows(schema):
        lines.append(f"| `{key}` | {kind} | {default} | {text} |")
    return "\n".join(lines)


def updated(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{README}: the marker lines {BEGIN!r} and {END!r} are missing")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) the reference; 0 if it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    schema = yaml.safe_load(SCHEMA.read_text())
    old = README.read_text()
    new = updated(old, reference(schema))
    if args.check:
        if new != old:
            print(f"{README} is out of date: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
