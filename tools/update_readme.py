"""Regenerate the README's generated tables from the registries: `python tools/update_readme.py`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hf_posenc

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {"encodings-table": hf_posenc.encodings_table, "families-table": hf_posenc.families_table}


def render(text: str) -> str:
    for marker, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    current = README.read_text()
    updated = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if updated == current else "README.md tables are stale: run python tools/update_readme.py")
    README.write_text(updated)
