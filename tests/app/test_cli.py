"""The command line: `signaling serve --help` documents every setting; environment and flags; bad values."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from pydantic_settings import NoDecode

from signaling.app.cli import main
from signaling.app.settings import Settings
from signaling.ws.aio.client import connect
from tests.helpers import REPO_ROOT, async_running_server, free_port, running_process, running_server
from tests.helpers.server_process import SIGNALING_ENV_PREFIX

pytestmark = pytest.mark.timeout(60)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(SIGNALING_ENV_PREFIX)}
    base["COLUMNS"] = "400"  # no wrapping inside names in --help
    return subprocess.run(
        [sys.executable, "-m", "signaling", *args],
        env={**base, **(env or {})},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_serve_help_lists_every_setting_with_default_and_env() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines; compare with whitespace normalised
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        assert f"env SIGNALING_{name.upper()})" in text, name
        default = info.get_default(call_default_factory=True)
        if info.annotation is bool:
            shown = "on" if default else "off"
        elif NoDecode in info.metadata:  # a comma-separated list
            shown = ",".join(default) or "none"
        else:
            shown = json.dumps(default) if isinstance(default, list | dict) else str(default)
        assert f"(default: {' '.join(shown.split())};" in text, (name, shown)
        if info.annotation is bool:
            assert "--no-" + name.replace("_", "-") in text, name


def test_top_level_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "schema", "peer"):
        assert f"    {command} " in out, out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_invalid_port_exits_nonzero_with_a_clear_message() -> None:
    result = run_cli("serve", "--port", "70000")
    assert result.returncode == 2
    assert "invalid settings" in result.stderr
    assert "port" in result.stderr
    assert "65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_env_value_is_refused_like_a_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNALING_PORT", "not-a-port")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "port" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "-1"], "port"),
        (["--path", "ws"], "path must start with /"),
        (["--certfile", "x.pem"], "--certfile and --keyfile go together"),
        (["--write-buffer-low", "300000", "--write-buffer-high", "200000"], "write_buffer_low"),
        (["--ping-timeout", "0"], "ping_timeout"),
        (["--log-level", "loud"], "log_level"),
        (["--max-message-size", "abc"], "max_message_size"),
        (["--ice-servers", "[{not json"], "ice_servers"),
    ],
)
def test_invalid_settings_in_process(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith(SIGNALING_ENV_PREFIX):
            monkeypatch.delenv(key)
    try:
        code = main(["serve", *args])
    except SystemExit as exc:  # argparse's own refusals (e.g. a value it cannot take)
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err, err


def test_unknown_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--no-such-flag"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_env_port_is_honoured() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1"]
    with running_process(
        argv,
        name="signaling-env-port",
        port=port,
        env={"SIGNALING_PORT": str(port)},
        env_drop_prefixes=(SIGNALING_ENV_PREFIX,),
        ready_log='"listening"',
    ) as srv:
        assert healthz(srv.port)["status"] == "ok"
        assert f"ws://127.0.0.1:{port}/ws" in srv.log_text()


def test_flag_overrides_env() -> None:
    env_port, flag_port = free_port(), free_port()
    while flag_port == env_port:
        flag_port = free_port()
    with running_server(
        env={"SIGNALING_PORT": str(env_port), "SIGNALING_PATH": "/signal"},
        port=flag_port,
        ready_log='"listening"',
    ) as srv:
        assert srv.port == flag_port
        assert healthz(flag_port)["status"] == "ok"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{env_port}/healthz", timeout=2)
        # A setting given only in the environment still applies next to flags.
        assert f"ws://127.0.0.1:{flag_port}/signal" in srv.log_text()


async def test_ice_servers_and_loop_from_flags() -> None:
    ice = [{"urls": "stun:stun.example.org:3478"}, {"urls": ["turn:t.example.org"], "username": "u", "credential": "c"}]
    async with async_running_server("--ice-servers", json.dumps(ice), "--no-uvloop", ready_log='"listening"') as srv:
        assert '"loop": "asyncio"' in srv.log_text()
        async with connect(f"{srv.url}/ws") as ws:
            await ws.send('{"type":"join","room":"cli"}')
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        assert welcome["iceServers"] == ice


def test_schema_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert "$defs" in json.loads(capsys.readouterr().out)


def test_token_command_prints_a_token_the_server_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from signaling.rooms.auth import RoomTokens

    secret = "t" * 40
    env = {"SIGNALING_AUTH_SECRET": secret}
    result = run_cli("token", "--room", "team-*", "--ttl", "2h", "--name", "Ada", env=env)
    assert result.returncode == 0, result.stderr
    grant = RoomTokens(secret).verify(result.stdout.strip(), "team-blue", time.time())
    assert grant.name == "Ada" and grant.expires_at - time.time() > 7000
    refused = run_cli("token", "--room", "r", env={"SIGNALING_AUTH_SECRET": ""})
    assert refused.returncode == 2 and "no secret" in refused.stderr
    bad = run_cli("token", "--room", "r", "--ttl", "soon", env=env)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_health_command_checks_the_server_its_variables_name() -> None:
    with running_server() as srv:
        assert run_cli("health", env={"SIGNALING_PORT": str(srv.port)}).returncode == 0
        assert run_cli("health", "--url", f"http://127.0.0.1:{srv.port}/healthz").returncode == 0
    nobody = run_cli("health", env={"SIGNALING_PORT": str(free_port())})
    assert nobody.returncode == 1 and "signaling health: http://127.0.0.1:" in nobody.stderr


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from signaling import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"signaling {__version__}"
