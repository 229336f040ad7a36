"""Settings, from the command line or SIGNALING_* environment variables (command line wins).

One pydantic-settings model is the single list of options: the CLI builds its flags and --help from it, so the
two can never drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_WEB_ROOT", "Settings"]

DEFAULT_WEB_ROOT = Path(__file__).resolve().parents[2] / "web"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNALING_", extra="ignore", validate_default=True)

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

    # Transport limits and timers
    max_message_size: int = Field(65536, ge=125, description="Largest WebSocket message in bytes (bigger: 1009).")
    max_connections: int = Field(10000, ge=0, description="Concurrent WebSocket connections (more: 503). 0: none.")
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds to complete the HTTP request head.")
    ping_interval: float = Field(20.0, ge=0, description="Seconds between keepalive pings. 0 disables them.")
    ping_timeout: float = Field(20.0, gt=0, description="Seconds to wait for a pong before dropping the peer.")
    idle_timeout: float = Field(0.0, ge=0, description="Close a connection silent this many seconds. 0: never.")
    close_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the close handshake.")
    write_buffer_high: int = Field(256 * 1024, ge=1024, description="Send buffer (bytes) that pauses reads.")
    write_buffer_low: int = Field(64 * 1024, ge=0, description="Send buffer (bytes) that resumes reads.")
    write_buffer_limit: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Send buffer (bytes) past which a slow peer gets 1008.",
    )

    # Signaling
    room_max_peers: int = Field(8, ge=1, description="Peers per room (more: room-full).")
    max_rooms: int = Field(10000, ge=1, description="Rooms in existence at once.")
    join_timeout: float = Field(30.0, gt=0, description="Seconds a connection may stay without joining (1008).")
    rate_limit: float = Field(50.0, gt=0, description="Messages per second a connection may send on average.")
    rate_burst: int = Field(200, ge=1, description="Messages a connection may send in a burst above the rate.")
    ice_servers: list[dict[str, Any]] = Field(
        default_factory=list,
        description='ICE servers for welcome.iceServers, as JSON: [{"urls": "stun:host:3478"}].',
    )

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

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("--certfile and --keyfile go together")
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        if self.write_buffer_low > self.write_buffer_high:
            raise ValueError("write_buffer_low must not exceed write_buffer_high")
        return self
