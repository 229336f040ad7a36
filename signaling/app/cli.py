"""Command line: ``signaling serve``. Flags are generated from Settings, so --help lists every option with its
default and environment variable."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["main"]


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    from .settings import Settings

    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = info.get_default(call_default_factory=True)
        shown = json.dumps(default) if isinstance(default, list | dict) else default
        env = "SIGNALING_" + name.upper()
        help_text = f"{info.description} (default: {shown}; env {env})"
        if _is_bool(info.annotation):
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag, dest=name, default=argparse.SUPPRESS, metavar=_metavar(info.annotation), help=help_text
            )


def _metavar(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(annotation)) + "}"
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _metavar(args[0]) if args else "VALUE"
    if origin is list:
        return "JSON"
    return getattr(annotation, "__name__", "VALUE").upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signaling", description="WebRTC signaling server.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the signaling server",
        description="Run the server. Every option can also be set with its SIGNALING_* environment variable.",
    )
    _add_settings_flags(serve)
    sub.add_parser("schema", help="print the JSON Schema of the signaling protocol")
    # Listed for --help only: main() hands everything after "peer" to the peer's own parser.
    sub.add_parser("peer", help="run a headless aiortc WebRTC peer (signaling peer --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["peer"]:
        from signaling.clients.peer.command import main as peer_main

        return int(peer_main(args_list[1:]))
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "schema":
        from signaling.protocol.schema import render_schema

        sys.stdout.write(render_schema())
        return 0
    from signaling.logs import configure_logging

    from .settings import Settings

    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"signaling: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from .process import run

    run(settings)
    return 0
