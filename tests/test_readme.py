"""Every code block of the README runs (tests/helpers/readme.py says how each is tested), so the README cannot
rot: a command that changed, an example that no longer works, a port or a variable that moved, fails here. The
browser example runs in Chromium: tests/e2e/test_readme_js.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from signaling import __version__
from signaling.protocol.parse import parse_client_message
from tests.helpers.ports import free_port
from tests.helpers.readme import Block, readme_blocks
from tests.helpers.server_process import running_server
from tests.helpers.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VENV_BIN = Path(sys.executable).parent
BLOCKS = readme_blocks()
STEP = 30.0


def blocks(*modes: str) -> list[Block]:
    return [b for b in BLOCKS if b.mode in modes]


def ids(found: list[Block]) -> list[str]:
    return [f"line{b.line}" for b in found]


def shell_env(**extra: str) -> dict[str, str]:
    """The environment a reader has after `make run`: the project's commands on PATH, no SIGNALING_* set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALING_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def with_free_ports(block: Block) -> tuple[str, dict[int, int]]:
    """The block's code with each port of its mode replaced by a free one."""
    mapping = {port: free_port() for port in block.ports}
    code = block.code
    for old, new in mapping.items():
        code = re.sub(rf"\b{old}\b", str(new), code)
    return code, mapping


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def answers(port: int) -> bool:
    try:
        healthz(port)
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM the block's process group (what it started in the background too); its output."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return out


def start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stop() reaches what it backgrounded
    )


def run(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def live_server() -> Iterator[int]:
    """A `signaling serve` for the examples that need one: its port."""
    with running_server() as server:
        yield server.port


def test_every_block_has_a_mode_and_every_mode_is_used() -> None:
    assert {b.mode for b in BLOCKS} >= {"run", "serve", "python", "js", "json", "docker", "dry-run"}


def test_the_screenshot_and_the_linked_files_exist() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?!https?:|#)[^)#]+)", text):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("block", blocks("run"), ids=ids(blocks("run")))
def test_run(block: Block) -> None:
    done = run(block.code, shell_env())
    assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.mark.parametrize("block", blocks("serve"), ids=ids(blocks("serve")))
def test_serve(block: Block) -> None:
    code, ports = with_free_ports(block)
    (port,) = ports.values()
    process = start(code, shell_env(PORT=str(port), SIGNALING_PORT=str(port)))
    try:
        wait_until_sync(lambda: answers(port) or process.poll() is not None, timeout=STEP)
        assert process.poll() is None, f"{block}: exited\n{stop(process)}"
        assert healthz(port)["status"] == "ok"
    finally:
        out = stop(process)
    assert '"stopped"' in out or "stopped" in out, f"{block}: no clean stop\n{out[-2000:]}"


def test_serve_check() -> None:
    (block,) = blocks("serve-check")
    code, ports = with_free_ports(block)
    (port,) = ports.values()
    first, rest = code.split("\n", 1)
    assert first.endswith("&"), block
    server = start(first.rstrip("& "), shell_env())
    try:
        wait_until_sync(lambda: answers(port) or server.poll() is not None, timeout=STEP)
        done = run(rest, shell_env())
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        assert re.search(r"^signaling_peers \d", done.stdout, re.M), done.stdout
    finally:
        stop(server)


def test_background() -> None:
    """Two nodes on one redis-server, as the README starts them: both up, both on Redis, which runs with the
    settings the cluster asks for."""
    (block,) = blocks("background")
    code, ports = with_free_ports(block)
    _redis, *nodes = ports.values()
    process = start(code + "wait\n", shell_env())
    try:
        for node in nodes:

            def clustered(node: int = node) -> bool:
                if not answers(node):
                    return False
                cluster = healthz(node).get("cluster")
                if not isinstance(cluster, dict):
                    return False
                return (cluster.get("redis"), cluster.get("nodes"), cluster.get("redis_settings")) == ("up", 2, [])

            wait_until_sync(clustered, timeout=STEP, message=lambda: f"{block}: node not clustered")
    finally:
        stop(process)


@pytest.mark.parametrize("block", blocks("peer"), ids=ids(blocks("peer")))
def test_peer(block: Block, live_server: int) -> None:
    code = re.sub(rf"\b{block.ports[0]}\b", str(live_server), block.code).strip() + " --duration 3\n"
    done = run(code, shell_env(), timeout=60)
    assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert '"event": "joined"' in done.stdout + done.stderr


@pytest.mark.parametrize("block", blocks("python"), ids=ids(blocks("python")))
def test_python(block: Block, live_server: int, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(re.sub(rf"\b{block.ports[0]}\b", str(live_server), block.code))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=shell_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    assert "says {'hello': 'bob'}" in done.stdout, done.stdout


def test_receiver(tmp_path: Path) -> None:
    """The webhook receiver example gets a room's life from a real server, checked by its own library."""
    (block,) = blocks("receiver")
    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(re.sub(rf"\b{block.ports[0]}\b", str(port), block.code))
    secret = subprocess.run(
        [str(VENV_BIN / "signaling"), "webhook-secret"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = shell_env(SIGNALING_WEBHOOK_SECRET=secret)
    receiver = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until_sync(lambda: listening(port), timeout=STEP, message="the receiver did not listen")
        hooks = {"SIGNALING_WEBHOOK_URLS": f"http://127.0.0.1:{port}/", "SIGNALING_WEBHOOK_SECRET": secret}
        with running_server(env=hooks) as server:
            join_and_leave(f"ws://127.0.0.1:{server.port}/ws")
            lines = [receiver_line(receiver) for _ in range(4)]
    finally:
        receiver.kill()
        receiver.communicate()
    peer = lines[1].split()[3]
    assert lines == ["room.started demo 1", f"peer.joined demo 2 {peer}", f"peer.left demo 3 {peer} left",
                     "room.finished demo 4"]  # fmt: skip


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def receiver_line(receiver: subprocess.Popen[str]) -> str:
    assert receiver.stdout is not None
    line = receiver.stdout.readline()
    assert line, f"the receiver ended: {receiver.stderr.read() if receiver.stderr else ''}"
    return line.strip()


def join_and_leave(url: str) -> None:
    from websockets.sync.client import connect

    with connect(url) as ws:
        ws.send(json.dumps({"type": "join", "room": "demo"}))
        assert json.loads(ws.recv(timeout=STEP))["type"] == "welcome"
        ws.send(json.dumps({"type": "leave"}))


@pytest.mark.parametrize("block", blocks("json"), ids=ids(blocks("json")))
def test_json(block: Block) -> None:
    for line in block.code.splitlines():
        parse_client_message(line)  # a SignalingError names what is wrong


def test_kubernetes() -> None:
    """No cluster here: the commands make the Secret the Deployment reads, apply the kustomization and wait for
    the Deployment (tests/test_deploy.py validates the manifests)."""
    (block,) = blocks("kubernetes")
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    create, apply, rollout = (shlex.split(line) for line in block.code.replace("\\\n", " ").splitlines())
    assert create[:4] == ["kubectl", "create", "secret", "generic"] and create[4] == secret["metadata"]["name"]
    literals = dict(arg.removeprefix("--from-literal=").split("=", 1) for arg in create[5:])
    assert set(literals) == set(secret["stringData"])
    assert apply[:3] == ["kubectl", "apply", "-k"] and (ROOT / apply[3] / "kustomization.yaml").is_file()
    assert (ROOT / apply[3]).resolve() == KUBERNETES
    assert rollout == ["kubectl", "rollout", "status", f"deployment/{deployment['metadata']['name']}"]


@pytest.mark.parametrize("block", blocks("dry-run"), ids=ids(blocks("dry-run")))
def test_dry_run(block: Block) -> None:
    for line in block.code.splitlines():
        command = line.split("#")[0].split()
        assert command[:1] == ["make"] and len(command) == 2, line
        done = subprocess.run(["make", "-n", command[1]], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), f"make -n {command[1]} would do nothing"


def test_the_version_is_reported() -> None:
    done = subprocess.run([str(VENV_BIN / "signaling"), "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"signaling {__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__} " in changelog, "CHANGELOG.md has no entry for this version"
