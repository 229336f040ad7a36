"""Fixtures of the process tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.web_root import make_web_root


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    return make_web_root(tmp_path)
