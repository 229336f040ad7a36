"""Settings, from the command line or SIGNALING_* environment variables (command line wins).

One pydantic-settings model is the single list of options: the CLI builds its flags and --help from it, and the
README's settings table is generated from it (``python -m signaling.app.settings --readme``; a test fails when
the table is stale), so the three can never drift apart. List settings take comma-separated values.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from signaling.interop.ywebrtc import DEFAULT_MAX_SUBSCRIBERS, DEFAULT_MAX_TOPIC_LENGTH, DEFAULT_MAX_TOPICS
from signaling.protocol import facts

from .webhooks import secret_key

__all__ = ["DEFAULT_WEB_ROOT", "Settings", "settings_table"]

DEFAULT_WEB_ROOT = Path(__file__).resolve().parents[2] / "web"

#: A list setting written as comma-separated values (``a,b``), in the environment and on the command line.
CommaList = Annotated[list[str], NoDecode]
#: The addresses a proxy on the same host connects from (uvicorn's convention): trusted unless told otherwise.
LOOPBACK = ("127.0.0.1", "::1")
#: The value that empties a list whose default is not empty (an empty variable counts as unset).
NONE = "none"

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_BEGIN = "<!-- settings:begin -->"
TABLE_END = "<!-- settings:end -->"


class Settings(BaseSettings):
    # An empty variable counts as unset (SIGNALING_AUTH_SECRET= in an env file: no room tokens), as operators expect.
    model_config = SettingsConfigDict(
        env_prefix="SIGNALING_", extra="ignore", validate_default=True, env_ignore_empty=True
    )

    # Listening
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 or :: for every interface).")
    port: int = Field(8765, ge=0, le=65535, description="TCP port to listen on.")
    path: str = Field("/ws", description="URL path of the signaling WebSocket endpoint.")
    certfile: Path | None = Field(None, description="TLS certificate chain (PEM): serve wss:// and https://.")
    keyfile: Path | None = Field(None, description="TLS private key (PEM) for --certfile.")
    cert_check_interval: float = Field(
        2.0, gt=0, description="Seconds between checks of the TLS files for changes (SIGHUP reloads at once)."
    )
    web_root: Path = Field(DEFAULT_WEB_ROOT, description="Folder served as static files at /.")
    trusted_proxies: CommaList = Field(
        default_factory=lambda: list(LOOPBACK),
        description="Reverse proxies (IPs or CIDRs) whose --proxy-header names the client; their own requests are not "
        "limited per address. none: no proxy.",
    )
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for", description="The header the trusted proxies set: X-Forwarded-For or Forwarded (RFC 7239)."
    )

    # Access
    auth_secret: SecretStr | None = Field(
        None, description="HS256 secret (32+ characters) for room tokens; set, every join needs a token."
    )
    auth_max_failures: int = Field(
        10,
        ge=1,
        description="Failed tokens from one address before its bad ones get no details (valid ones still join).",
    )
    auth_failure_window: float = Field(
        60.0, gt=0, description="Seconds over which failed tokens (and failed API keys) are counted."
    )
    api_key: SecretStr | None = Field(
        None,
        description="Bearer key (32+ characters) of the server API (/api/v1/...) for your backend; unset: no API.",
    )
    allowed_origins: CommaList = Field(
        default_factory=list,
        description="Browser origins allowed besides the server's own (https://app.example); * allows any.",
    )
    webhook_urls: CommaList = Field(
        default_factory=list, description="Your backend's URLs that get the room events (webhooks); unset: none."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="The webhooks' signing secret: whsec_ + base64 (signaling webhook-secret prints one)."
    )
    webhook_retry_for: float = Field(
        facts.DEFAULT_WEBHOOK_RETRY_FOR, gt=0, description="Seconds an event is retried for before it is given up."
    )
    webhook_queue: int = Field(
        facts.DEFAULT_WEBHOOK_QUEUE,
        ge=1,
        description="Webhook events waiting at most (in memory, or the cluster's in Redis); more are counted lost.",
    )

    # Transport limits and timers
    max_message_size: int = Field(
        facts.DEFAULT_MAX_MESSAGE_SIZE, ge=125, description="Largest WebSocket message in bytes (bigger: 1009)."
    )
    max_fragments: int = Field(1024, ge=1, description="Frames one message may come in (more: 1009).")
    message_timeout: float = Field(10.0, gt=0, description="Seconds a message may take to arrive whole (1008).")
    frame_rate: float = Field(
        1000.0, ge=0, description="Frames/s a connection may send, pings and fragments included (1008). 0: none."
    )
    frame_burst: float = Field(4000.0, ge=1, description="Frames a connection may send in a burst.")
    max_connections: int = Field(10000, ge=0, description="Concurrent WebSocket connections (more: 503). 0: none.")
    max_connections_per_ip: int = Field(
        64, ge=0, description="Concurrent WebSocket connections from one client address (more: 429). 0: none."
    )
    connection_rate_per_ip: float = Field(
        10.0, ge=0, description="New WebSocket connections per second from one address (more: 429). 0: none."
    )
    connection_burst_per_ip: int = Field(30, ge=1, description="New connections one address may open in a burst.")
    max_handshakes_per_ip: int = Field(
        16, ge=0, description="Unfinished HTTP requests per TCP peer address (slowloris; more: 429). 0: none."
    )
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds to complete the HTTP request head.")
    ping_interval: float = Field(20.0, ge=0, description="Seconds between keepalive pings. 0 disables them.")
    ping_timeout: float = Field(20.0, gt=0, description="Seconds to wait for a pong before dropping the peer.")
    idle_timeout: float = Field(0.0, ge=0, description="Close a connection silent this many seconds. 0: never.")
    close_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the close handshake.")
    write_buffer_high: int = Field(
        256 * 1024, ge=1024, description="Send buffer (bytes) that pauses reads from its peer and its senders."
    )
    write_buffer_low: int = Field(64 * 1024, ge=0, description="Send buffer (bytes) that resumes reads.")
    write_buffer_limit: int = Field(
        4 * 1024 * 1024, ge=1024, description="Send buffer (bytes) past which a slow peer gets 1008."
    )
    slow_consumer_timeout: float = Field(
        10.0, gt=0, description="Seconds a peer may stay over the high mark while others wait on it (1008)."
    )

    # Signaling
    room_max_peers: int = Field(facts.DEFAULT_ROOM_MAX_PEERS, ge=1, description="Peers per room (more: room-full).")
    max_rooms: int = Field(facts.DEFAULT_MAX_ROOMS, ge=1, description="Rooms in existence at once.")
    join_timeout: float = Field(30.0, gt=0, description="Seconds a connection may stay without joining (1008).")
    whip_answer_timeout: float = Field(
        15.0, gt=0, description="Seconds a WHIP/WHEP POST waits for the receiving peer's answer (then 504)."
    )
    rate_limit: float = Field(50.0, gt=0, description="Messages per second a connection may send on average.")
    rate_burst: int = Field(500, ge=1, description="Messages a connection may send in a burst above the rate.")
    rate_limit_bytes: int = Field(256 * 1024, ge=1, description="Bytes per second a connection may send.")
    rate_burst_bytes: int = Field(1024 * 1024, ge=1, description="Bytes a connection may send in a burst.")
    abuse_strikes: int = Field(
        100, ge=1, description="Refusals beyond the rate after which a connection is closed (1008)."
    )
    ice_servers: list[dict[str, Any]] = Field(
        default_factory=list,
        description='ICE servers for welcome.iceServers, as JSON: [{"urls": "stun:host:3478"}].',
    )
    turn_secret: SecretStr | None = Field(
        None, description="coturn's static-auth-secret: welcome carries TURN credentials made with it."
    )
    turn_urls: CommaList = Field(
        default_factory=list, description="TURN URLs for those credentials (turn:host:3478?transport=udp,...)."
    )
    turn_ttl: float = Field(86400.0, ge=1, description="Seconds TURN credentials are valid (refreshed at half-life).")
    resume_grace: float = Field(
        facts.DEFAULT_RESUME_GRACE,
        ge=0,
        description="Seconds a resumable session outlives a dropped connection. 0: resume off.",
    )
    resume_buffer: int = Field(
        facts.DEFAULT_RESUME_BUFFER, ge=1, description="Messages kept per resumable session for its replay."
    )
    resume_buffer_bytes: int = Field(
        facts.DEFAULT_RESUME_BUFFER_BYTES,
        ge=1024,
        description="Bytes kept per resumable session (the oldest go first).",
    )
    max_ghosts_per_ip: int = Field(
        facts.DEFAULT_MAX_GHOSTS_PER_ADDRESS,
        ge=1,
        description="Sessions in their grace period one client address may leave (more: the oldest end).",
    )
    max_ghosts: int = Field(
        facts.DEFAULT_MAX_GHOSTS,
        ge=1,
        description="Sessions in their grace period left on one node (more: the oldest end).",
    )

    # y-webrtc (Yjs apps): signaling/interop/ywebrtc.py
    ywebrtc_path: str = Field(
        "/y-webrtc", description="URL path of the y-webrtc signaling endpoint (Yjs's WebRTC provider). none: off."
    )
    ywebrtc_max_topics: int = Field(
        DEFAULT_MAX_TOPICS, ge=1, description="Topics (documents) one y-webrtc connection may subscribe to."
    )
    ywebrtc_max_topic_length: int = Field(
        DEFAULT_MAX_TOPIC_LENGTH, ge=1, le=4096, description="Characters of a y-webrtc topic (longer: skipped)."
    )
    ywebrtc_max_subscribers: int = Field(
        DEFAULT_MAX_SUBSCRIBERS, ge=1, description="Subscribers of one y-webrtc topic (more: room-full)."
    )

    # Cluster
    redis_url: SecretStr | None = Field(
        None, description="Redis (redis://host:6379/0): processes on one Redis share rooms. Unset: one process."
    )
    redis_prefix: str = Field(
        "signaling", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Key prefix: clusters sharing one Redis differ."
    )
    node_ttl: float = Field(
        10.0, ge=1, description="Seconds without a heartbeat after which a node counts as dead (its peers leave)."
    )

    # PeerJS (signaling/interop/peerjs/): PeerJS apps connect with new Peer({host, port, path: peerjs_path})
    peerjs: bool = Field(True, description="Serve the PeerJS server protocol (the peerjs client) under --peerjs-path.")
    peerjs_path: str = Field(
        "/peerjs", pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$", description="URL prefix of the PeerJS API and socket."
    )
    peerjs_keys: CommaList = Field(
        default_factory=lambda: ["peerjs"],
        description="PeerJS keys accepted, each a namespace of ids (another key: Invalid key provided).",
    )
    peerjs_max_peers: int = Field(5000, ge=1, description="PeerJS ids one key holds at once (more: the limit error).")
    peerjs_expire_timeout: float = Field(
        5.0, gt=0, description="Seconds a PeerJS message waits for its peer to connect (then EXPIRE to its sender)."
    )
    peerjs_discovery: bool = Field(False, description="Answer GET {peerjs-path}/{key}/peers with the key's ids.")

    # Operation
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON lines unless stdout is a terminal."
    )
    uvloop: bool = Field(True, description="Use uvloop when it is installed.")
    echo: bool = Field(False, description="Test mode: a plain WebSocket echo server on every path.")

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("trusted_proxies", "allowed_origins", "turn_urls", "webhook_urls", "peerjs_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().lower() == NONE:
                return []
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("--certfile and --keyfile go together")
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        if self.ywebrtc_path.lower() != NONE and (
            not self.ywebrtc_path.startswith("/") or self.ywebrtc_path == self.path
        ):
            raise ValueError("ywebrtc_path must start with / and differ from path (or be none)")
        if self.write_buffer_low > self.write_buffer_high:
            raise ValueError("write_buffer_low must not exceed write_buffer_high")
        if self.auth_secret is not None and len(self.auth_secret.get_secret_value()) < 32:
            raise ValueError("auth_secret must be at least 32 characters (e.g. openssl rand -hex 32)")
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 32:
            raise ValueError("api_key must be at least 32 characters (e.g. openssl rand -hex 32)")
        if any(re.fullmatch(facts.ROOM_PATTERN, key) is None for key in self.peerjs_keys):
            raise ValueError("each PeerJS key must be 1 to 64 of A-Z a-z 0-9 _ -")
        if self.peerjs and (self.path == self.peerjs_path or self.path.startswith(self.peerjs_path + "/")):
            raise ValueError("path must not be under peerjs_path")
        if (self.turn_secret is None) != (not self.turn_urls):
            raise ValueError("turn_secret and turn_urls go together")
        if (self.webhook_secret is None) != (not self.webhook_urls):
            raise ValueError("webhook_secret and webhook_urls go together")
        if self.webhook_secret is not None:
            secret_key(self.webhook_secret.get_secret_value())  # ValueError says what a secret looks like
        for url in self.webhook_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"webhook URLs are http:// or https:// URLs with a host, not {url!r}")
        if self.rate_burst_bytes < self.max_message_size and not self.echo:
            raise ValueError("rate_burst_bytes must be at least max_message_size, or big messages could never pass")
        return self


def _shown_default(name: str) -> str:
    info = Settings.model_fields[name]
    default = info.get_default(call_default_factory=True)
    if name == "web_root":
        return "`web/` of the checkout"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, list):
        if name == "ice_servers":
            return "`[]`"
        return f"`{','.join(default)}`" if default else "none"
    return f"`{default}`"


def settings_table() -> str:
    """The README's table of every setting: flag, environment variable, default, meaning."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        shown = f"`{flag}` / `--no-{flag[2:]}`" if info.annotation is bool else f"`{flag}`"
        rows.append(f"| {shown} | `SIGNALING_{name.upper()}` | {_shown_default(name)} | {info.description} |")
    return "\n".join(rows) + "\n"


def _readme_with_table(text: str) -> str:
    start = text.index(TABLE_BEGIN) + len(TABLE_BEGIN)
    end = text.index(TABLE_END)
    return text[:start] + "\n" + settings_table() + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signaling.app.settings", description=__doc__)
    parser.add_argument("--readme", action="store_true", help="rewrite the settings table in README.md")
    args = parser.parse_args(argv)
    if args.readme:
        README.write_text(_readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(settings_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
