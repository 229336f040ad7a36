"""The committed generated files match their sources: the JSON Schema (docs/protocol.schema.json and the block in
docs/protocol.md) the models, and web/protocol.js the protocol's facts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from signaling.protocol.errors import ErrorCode
from signaling.protocol.facts import FINAL_CLOSE_CODES, ROOM_PATTERN, render_js
from signaling.protocol.models import CLIENT_MESSAGE_TYPES, SERVER_MESSAGE_TYPES
from signaling.protocol.schema import (
    JS_NAME,
    MARKDOWN_NAME,
    REGENERATE,
    SCHEMA_BEGIN,
    SCHEMA_END,
    SCHEMA_NAME,
    check,
    default_docs_dir,
    default_web_dir,
    embed_schema,
    extract_schema,
    main,
    protocol_json_schema,
    render_schema,
)

DOCS = default_docs_dir()
WEB = default_web_dir()


def test_committed_schema_file_matches_the_models() -> None:
    committed = (DOCS / SCHEMA_NAME).read_text(encoding="utf-8")
    assert committed == render_schema(), f"docs/{SCHEMA_NAME} is stale; run: {REGENERATE}"


def test_schema_block_in_protocol_md_matches_the_models() -> None:
    embedded = extract_schema((DOCS / MARKDOWN_NAME).read_text(encoding="utf-8"))
    assert embedded == render_schema(), f"the schema block in docs/{MARKDOWN_NAME} is stale; run: {REGENERATE}"


def test_committed_protocol_js_matches_the_facts() -> None:
    committed = (WEB / JS_NAME).read_text(encoding="utf-8")
    assert committed == render_js(), f"web/{JS_NAME} is stale; run: {REGENERATE}"


def test_no_browser_module_writes_a_protocol_fact_again() -> None:
    """The browser client and the demo page take the facts from web/protocol.js, never from a copy."""
    copies = {
        "the room pattern": ROOM_PATTERN.strip("^$"),
        "the final close codes": ", ".join(str(code) for code in FINAL_CLOSE_CODES),
    }
    for module in sorted(WEB.glob("*.js")):
        if module.name != JS_NAME:
            source = module.read_text(encoding="utf-8")
            for fact, literal in copies.items():
                assert literal not in source, f"web/{module.name} writes {fact} again: import it from ./{JS_NAME}"


def test_check_reports_no_drift() -> None:
    assert check(DOCS, WEB) == []


def test_rendering_is_deterministic() -> None:
    assert render_schema() == render_schema()
    assert json.loads(render_schema()) == protocol_json_schema()


def test_schema_covers_the_whole_protocol() -> None:
    schema = protocol_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    assert schema["anyOf"] == [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}]
    client = defs["ClientMessage"]["discriminator"]
    server = defs["ServerMessage"]["discriminator"]
    assert client["propertyName"] == server["propertyName"] == "type"
    assert set(client["mapping"]) == set(CLIENT_MESSAGE_TYPES)
    assert set(server["mapping"]) == set(SERVER_MESSAGE_TYPES)
    for ref in [*client["mapping"].values(), *server["mapping"].values()]:
        assert ref.removeprefix("#/$defs/") in defs
    assert set(defs["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}


@pytest.mark.parametrize(
    ("model", "required", "optional"),
    [
        ("Join", {"type", "room"}, {"id", "name", "meta", "token", "resumable", "resume", "last_seq"}),
        ("Candidate", {"type", "to", "candidate"}, {"id"}),
        ("Message", {"type", "data"}, {"id", "to"}),
        ("Welcome", {"type", "peer", "room", "peers", "iceServers"}, {"resume", "resumed", "ref"}),
        ("RelayedOffer", {"type", "from", "sdp"}, {"seq"}),
        ("ErrorMessage", {"type", "code", "message"}, {"ref"}),
        ("IceCandidate", {"candidate", "sdpMid", "sdpMLineIndex"}, {"usernameFragment"}),
        ("IceServer", {"urls"}, {"username", "credential"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_required_and_optional_fields(model: str, required: set[str], optional: set[str]) -> None:
    definition = protocol_json_schema()["$defs"][model]
    assert set(definition["required"]) == required
    assert set(definition["properties"]) == required | optional


@pytest.mark.parametrize(("model", "field"), [("Welcome", "ref"), ("Welcome", "resume"), ("ErrorMessage", "ref")])
def test_omitted_server_fields_are_not_nullable(model: str, field: str) -> None:
    """The server leaves these out instead of sending null, and the schema says so."""
    prop = protocol_json_schema()["$defs"][model]["properties"][field]
    assert "null" not in json.dumps(prop)


def test_room_pattern_is_in_the_schema() -> None:
    room = protocol_json_schema()["$defs"]["Join"]["properties"]["room"]
    assert room["pattern"] == "^[A-Za-z0-9_-]{1,64}$"


def test_embed_and_extract_round_trip() -> None:
    markdown = f"# T\n\ntext\n\n{SCHEMA_BEGIN}\nold\n{SCHEMA_END}\n\nafter\n"
    updated = embed_schema(markdown, '{"a": 1}\n')
    assert extract_schema(updated) == '{"a": 1}\n'
    assert updated.endswith(f"```\n{SCHEMA_END}\n\nafter\n")
    assert embed_schema(updated, '{"a": 1}\n') == updated


@pytest.mark.parametrize(
    "markdown",
    ["no markers", f"{SCHEMA_END}\n{SCHEMA_BEGIN}", f"{SCHEMA_BEGIN}{SCHEMA_BEGIN}{SCHEMA_END}"],
    ids=["missing", "reversed", "doubled"],
)
def test_bad_markers(markdown: str) -> None:
    with pytest.raises(ValueError):
        embed_schema(markdown, "{}\n")


@pytest.mark.parametrize("stale", [SCHEMA_NAME, JS_NAME])
def test_cli_check_fails_on_drift_and_write_repairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stale: str
) -> None:
    shutil.copy(DOCS / MARKDOWN_NAME, tmp_path / MARKDOWN_NAME)
    (tmp_path / SCHEMA_NAME).write_text(render_schema(), encoding="utf-8")
    (tmp_path / JS_NAME).write_text(render_js(), encoding="utf-8")
    (tmp_path / stale).write_text("{}\n", encoding="utf-8")
    where = ["--docs", str(tmp_path), "--web", str(tmp_path)]
    assert main(["--check", *where]) == 1
    assert REGENERATE in capsys.readouterr().err
    assert main(["--write", *where]) == 0
    assert main(["--check", *where]) == 0
    assert (tmp_path / SCHEMA_NAME).read_text(encoding="utf-8") == render_schema()
    assert (tmp_path / JS_NAME).read_text(encoding="utf-8") == render_js()


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == render_schema()
