"""The files generated from the protocol's source: its JSON Schema (from the models) and web/protocol.js (from
facts.py, for the browser client); rendered into the checkout and checked against their sources.

They are generated, never hand-edited: docs/protocol.schema.json holds the schema, docs/protocol.md embeds the
same text between the marker comments, and web/protocol.js holds the facts. tests/protocol/test_schema.py fails
on drift and names the command that fixes it:

    python -m signaling.protocol.schema --write     # regenerate the three files
    python -m signaling.protocol.schema --check     # exit 1 on drift
    python -m signaling.protocol.schema             # print the schema
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .facts import render_js
from .models import CLIENT_ADAPTER, PROTOCOL_VERSION, SERVER_ADAPTER

__all__ = [
    "REGENERATE",
    "SCHEMA_BEGIN",
    "SCHEMA_END",
    "check",
    "default_docs_dir",
    "default_web_dir",
    "embed_schema",
    "extract_schema",
    "main",
    "protocol_json_schema",
    "render_schema",
    "write",
]

SCHEMA_BEGIN: Final = "<!-- schema:begin -->"
SCHEMA_END: Final = "<!-- schema:end -->"
REGENERATE: Final = "python -m signaling.protocol.schema --write"
MARKDOWN_NAME: Final = "protocol.md"
SCHEMA_NAME: Final = "protocol.schema.json"
JS_NAME: Final = "protocol.js"


def protocol_json_schema() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) document for the whole protocol, generated from the models.

    ``$defs`` holds every message; ``ClientMessage`` and ``ServerMessage`` are the two unions on ``type``.
    Client messages are described as validated (input), server messages as serialized (output).
    """
    ref_template = "#/$defs/{model}"
    client = CLIENT_ADAPTER.json_schema(mode="validation", ref_template=ref_template)
    server = SERVER_ADAPTER.json_schema(mode="serialization", ref_template=ref_template)
    defs: dict[str, Any] = {}
    for part in (client, server):
        for name, schema in part.pop("$defs", {}).items():
            if name in defs and defs[name] != schema:
                raise RuntimeError(f"schema definition {name!r} differs between client and server messages")
            defs[name] = schema
    client["description"] = "A message sent by a client to the server."
    server["description"] = "A message sent by the server to a client."
    defs["ClientMessage"] = client
    defs["ServerMessage"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Signaling protocol v{PROTOCOL_VERSION}",
        "description": (
            "WebRTC signaling over WebSocket text frames, one JSON object per frame. Unknown fields are "
            "ignored. See docs/protocol.md."
        ),
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": defs,
    }


def render_schema() -> str:
    """The schema as text; sorted and indented so that it is the same on every run and diffs well."""
    return json.dumps(protocol_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _span(markdown: str) -> tuple[int, int]:
    """Offsets of the text between the markers; ValueError unless each marker appears once, in order."""
    if markdown.count(SCHEMA_BEGIN) != 1 or markdown.count(SCHEMA_END) != 1:
        raise ValueError(f"expected exactly one {SCHEMA_BEGIN} and one {SCHEMA_END} marker")
    start = markdown.index(SCHEMA_BEGIN) + len(SCHEMA_BEGIN)
    end = markdown.index(SCHEMA_END)
    if end < start:
        raise ValueError(f"{SCHEMA_END} comes before {SCHEMA_BEGIN}")
    return start, end


def embed_schema(markdown: str, schema_text: str) -> str:
    """Replace whatever is between the markers with a fenced JSON block holding ``schema_text``."""
    start, end = _span(markdown)
    return markdown[:start] + "\n```json\n" + schema_text + "```\n" + markdown[end:]


def extract_schema(markdown: str) -> str:
    """The schema text embedded between the markers (without the fence)."""
    start, end = _span(markdown)
    block = markdown[start:end].strip("\n")
    fence_open, fence_close = "```json\n", "\n```"
    if not (block.startswith(fence_open) and block.endswith(fence_close)):
        raise ValueError("the schema block must be a ```json fenced block between the markers")
    return block[len(fence_open) : len(block) - len("```")]  # keeps the schema's final newline


def default_docs_dir() -> Path:
    """docs/ of the source checkout this module was imported from."""
    return Path(__file__).resolve().parents[2] / "docs"


def default_web_dir() -> Path:
    """web/ of the source checkout this module was imported from."""
    return Path(__file__).resolve().parents[2] / "web"


def _whole_files(docs_dir: Path, web_dir: Path | None) -> list[tuple[Path, str, str]]:
    """The files generated whole: (path, the text they must hold, their source)."""
    files = [(docs_dir / SCHEMA_NAME, render_schema(), "signaling/protocol/models.py")]
    if web_dir is not None:
        files.append((web_dir / JS_NAME, render_js(), "signaling/protocol/facts.py"))
    return files


def _stale(path: Path, expected: str) -> bool:
    return not path.exists() or path.read_text(encoding="utf-8") != expected


def check(docs_dir: Path, web_dir: Path | None = None) -> list[str]:
    """Describe every way the committed files differ from their sources; empty when they agree."""
    problems = [
        f"{path} differs from what {source} generates (or is missing)"
        for path, expected, source in _whole_files(docs_dir, web_dir)
        if _stale(path, expected)
    ]
    md_path = docs_dir / MARKDOWN_NAME
    if not md_path.exists():
        problems.append(f"{md_path} is missing")
    else:
        try:
            embedded = extract_schema(md_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            problems.append(f"{md_path}: {exc}")
        else:
            if embedded != render_schema():
                problems.append(f"the schema block in {md_path} differs from the generated schema")
    return problems


def write(docs_dir: Path, web_dir: Path | None = None) -> list[Path]:
    """Regenerate the files (protocol.md must already hold the markers); return the files that changed."""
    changed: list[Path] = []
    for path, expected, _ in _whole_files(docs_dir, web_dir):
        if _stale(path, expected):
            path.write_text(expected, encoding="utf-8")
            changed.append(path)
    md_path = docs_dir / MARKDOWN_NAME
    markdown = md_path.read_text(encoding="utf-8")
    updated = embed_schema(markdown, render_schema())
    if updated != markdown:
        md_path.write_text(updated, encoding="utf-8")
        changed.append(md_path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signaling.protocol.schema",
        description="Render or check the protocol JSON Schema in docs/.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--write", action="store_true", help="regenerate docs/protocol.schema.json, docs/protocol.md, web/protocol.js"
    )
    action.add_argument("--check", action="store_true", help="exit 1 if the committed files have drifted")
    parser.add_argument("--docs", type=Path, default=None, help="the docs directory (default: the checkout's)")
    parser.add_argument("--web", type=Path, default=None, help="the web directory (default: the checkout's)")
    args = parser.parse_args(argv)
    docs_dir: Path = args.docs if args.docs is not None else default_docs_dir()
    web_dir: Path = args.web if args.web is not None else default_web_dir()
    if args.write:
        for path in write(docs_dir, web_dir):
            print(f"wrote {path}")
        return 0
    if args.check:
        problems = check(docs_dir, web_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(render_schema())
    return 0


if __name__ == "__main__":
    sys.exit(main())
