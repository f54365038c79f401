"""bench/RESULTS.md: each benchmark owns one ``## `` section and rewrites only that one."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (a ``## `` line) by ``section``, or append it;
    the other benchmarks' sections stay as they are."""
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"{re.escape(heading)}\n.*?(?=\n## |\Z)", re.DOTALL)
    updated = (
        pattern.sub(lambda _m: section.rstrip("\n") + "\n", existing)
        if pattern.search(existing)
        else existing.rstrip("\n") + "\n\n" + section
    )
    RESULTS.write_text(updated.rstrip("\n") + "\n")
