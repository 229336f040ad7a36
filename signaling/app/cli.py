"""Command line: ``signaling serve``. Flags are generated from Settings, so --help lists every option with its
default and environment variable."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

__all__ = ["main"]


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    from pydantic_settings import NoDecode

    from .settings import Settings

    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = info.get_default(call_default_factory=True)
        if info.annotation is bool:
            help_text = f"{info.description} (default: {'on' if default else 'off'}; env SIGNALING_{name.upper()})"
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, dest=name, action=action, default=argparse.SUPPRESS, help=help_text)
            continue
        comma_list = NoDecode in info.metadata
        if comma_list:
            shown: object = ",".join(default) or "none"
        elif isinstance(default, list | dict):
            shown = json.dumps(default)
        else:
            shown = default
        help_text = f"{info.description} (default: {shown}; env SIGNALING_{name.upper()})"
        metavar = "A,B,..." if comma_list else _metavar(info.annotation)
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def _metavar(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(annotation)) + "}"
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _metavar(args[0]) if args else "VALUE"
    if origin is list:
        return "JSON"
    if annotation is SecretStr:
        return "SECRET"
    return getattr(annotation, "__name__", "VALUE").upper()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h`` or ``7d``."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0)
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 30m, 12h)") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return seconds


def _print_token(room: str, ttl: float, name: str | None, secret: str | None) -> int:
    from signaling.rooms.auth import RoomTokens

    if not secret:
        print("signaling token: no secret: set SIGNALING_AUTH_SECRET (or pass --secret)", file=sys.stderr)
        return 2
    try:
        tokens = RoomTokens(secret)
    except ValueError as exc:
        print(f"signaling token: {exc}", file=sys.stderr)
        return 2
    print(tokens.issue(room, ttl, time.time(), name))
    return 0


def _health(url: str | None, timeout: float) -> int:
    """Exit 0 when the server answers GET /healthz with 200: the container's HEALTHCHECK, without curl."""
    import ssl
    import urllib.error
    import urllib.request

    if url is None:
        from .settings import Settings

        settings = Settings(**{})  # SIGNALING_* of the environment: the server's own address
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if settings.certfile is not None else "http"
        url = f"{scheme}://{host}:{settings.port}/healthz"
    context = None
    if url.startswith("https:"):
        # The server checks itself: its own certificate need not name the address it is reached at here.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"signaling health: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    from signaling import __version__

    parser = argparse.ArgumentParser(prog="signaling", description="WebRTC signaling server.")
    parser.add_argument("--version", action="version", version=f"signaling {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the signaling server",
        description="Run the server. Every option can also be set with its SIGNALING_* environment variable.",
    )
    _add_settings_flags(serve)
    sub.add_parser("schema", help="print the JSON Schema of the signaling protocol")
    token = sub.add_parser(
        "token",
        help="print a room token (a JWT signed with the auth secret)",
        description="Print a room token for clients of a server run with --auth-secret (SIGNALING_AUTH_SECRET).",
    )
    token.add_argument("--room", required=True, help="the room, or a prefix ending in * (room-*)")
    token.add_argument("--ttl", type=_duration, default=3600.0, help="lifetime: 3600, 90s, 30m, 12h or 7d (default 1h)")
    token.add_argument("--name", help="the peer name the token imposes (a client-sent name is then ignored)")
    token.add_argument(
        "--secret",
        default=None,
        help="the auth secret (default: SIGNALING_AUTH_SECRET; prefer the variable: arguments show in ps)",
    )
    sub.add_parser(
        "webhook-secret",
        help="print a new webhook signing secret (whsec_..., for SIGNALING_WEBHOOK_SECRET and your receiver)",
    )
    health = sub.add_parser(
        "health",
        help="exit 0 if the server on this host answers /healthz (a container's HEALTHCHECK)",
        description="GET /healthz of the server configured by the SIGNALING_* variables (or --url); exit 0 on 200.",
    )
    health.add_argument("--url", help="the URL to check instead, e.g. http://127.0.0.1:8765/healthz")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
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
    if args.command == "health":
        return _health(args.url, args.timeout)
    if args.command == "webhook-secret":
        from .webhooks import new_secret

        print(new_secret())
        return 0
    if args.command == "token":
        return _print_token(args.room, args.ttl, args.name, args.secret or os.environ.get("SIGNALING_AUTH_SECRET"))
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
