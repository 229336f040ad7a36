"""The documentation stays in step with the code: every setting is in the README, every layer in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.app.settings import TABLE_BEGIN, TABLE_END, Settings, settings_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_readme_documents_every_setting(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    flag = "--" + name.replace("_", "-")
    env = "SIGNALING_" + name.upper()
    assert f"`{flag}" in readme, f"README.md's settings table lacks {flag}"
    assert f"`{env}`" in readme, f"README.md's settings table lacks {env}"


def test_readme_settings_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    begin, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    assert readme[begin:end].strip("\n") == settings_table().strip("\n"), (
        "README.md's settings table is stale: run python -m signaling.app.settings --readme"
    )


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]
    assert "make run" in head and "make test" in head


@pytest.mark.parametrize(
    "module",
    sorted(
        str(p.relative_to(ROOT / "signaling")).removesuffix(".py")
        for p in (ROOT / "signaling").rglob("*.py")
        if p.name != "__init__.py" and p.name != "__main__.py"
    ),
)
def test_architecture_names_every_module(module: str) -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert Path(module).name + ".py" in text, f"docs/architecture.md does not say where {module}.py fits"


def test_the_grafana_dashboard_queries_metrics_the_server_exports() -> None:
    import json
    import re

    from signaling.app.settings import Settings as _Settings
    from signaling.app.wiring import SignalingApp
    from signaling.ws.aio.stats import TransportStats

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    settings = {
        "turn_secret": "x",
        "turn_urls": "turn:h",
        "redis_url": "redis://127.0.0.1:1/0",
    }  # a node: cluster metrics
    app = SignalingApp(_Settings.model_validate(settings))
    assert app.cluster is not None
    app.cluster.backlog_bytes = 0  # read at the first heartbeat
    app.transport_stats = TransportStats()
    exported = app.metrics.render().decode()
    suffixes = {"counter": ("", "_total"), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = {
        name + suffix
        for name, kind in re.findall(r"^# TYPE ([a-z_]+) ([a-z]+)$", exported, re.MULTILINE)
        for suffix in suffixes.get(kind, ("",))
    }
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\b((?:signaling|process)_[a-z_]+)", target["expr"]))
            assert used <= names, (panel["title"], used - names)
