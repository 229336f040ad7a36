"""The tree stays readable: no god modules, in Python or in the page's JavaScript."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600
#: The documented browser client is mostly JSDoc, which is what its users read.
JS_LIMITS = {"signaling-client.js": 900}

SOURCES = sorted(
    [p for folder in ("signaling", "tests", "bench") for p in (ROOT / folder).rglob("*.py")]
    + list((ROOT / "web").glob("*.js"))
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_the_line_limit(path: Path) -> None:
    limit = JS_LIMITS.get(path.name, MAX_LINES)
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= limit, f"{path.relative_to(ROOT)} has {lines} lines (limit {limit}): split it by what it holds"
