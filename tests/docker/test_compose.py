"""docker-compose.yml brought up with the README's own commands ("Docker and compose"), on the project's engine
(conftest.py: redis, coturn and nginx are local stand-ins for the registry's images, only on these machines).

The commands run as a reader types them, in a copy of the files they read (the compose file, .env.example, the
nginx configuration) so that the .env they make stays out of the repository. Two adaptations, both for this
machine only: Debian's docker-compose 1.29 stands for `docker compose` (v2 is not packaged), with ``--detach``
so that the test goes on; and a test-only docker-compose.override.yml lowers the open-files limit to this
machine's hard limit (20000 here: the compose file's 65536 cannot be set).

- `docker compose up`: a joined client's ``welcome`` carries TURN credentials that the coturn container accepts
  (a real allocation through the published port, over UDP and TCP; a wrong password is refused), and the server
  reports Redis up, with nothing to fix in its settings.
- `docker compose --profile cluster up`: two nodes behind nginx. A client on one node, in a room with a client
  on the other, both through nginx: `docker compose stop` of its node drains it, the client resumes on the other
  through the same URL, and a numbered stream from the other client arrives complete, in order, once.
- `docker build -t signaling:<version> .`: offline, from the install step's cache, the very image tested here.
"""

from __future__ import annotations

import asyncio
import resource
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling import __version__
from signaling.clients.signaling_client import SignalingClient
from signaling.protocol.models import PeerJoined
from signaling.ws.frames import CloseCode
from tests.docker.images import project_tags
from tests.docker.probes import answers, http_json
from tests.helpers.docker import Docker
from tests.helpers.readme import readme_blocks
from tests.helpers.streams import NumberedStream
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
#: What the compose commands read, copied as a reader's clone has them.
PROJECT_FILES = ("docker-compose.yml", ".env.example", "deploy/nginx")
#: The published ports (docker-compose.yml): the single node, nginx in front of the cluster, coturn.
NODE_PORT, PROXY_PORT, TURN_PORT = 8765, 8080, 3478
#: The open files a node may have here: the compose file asks for 65536, above this machine's hard limit.
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
STEP = 10.0
#: Up to the first HEALTHCHECK of the nodes (every 10 s), then nginx's start.
UP_WITHIN = 60.0


def readme_commands() -> list[str]:
    """The README's docker block, one command a line (comments dropped)."""
    (block,) = [b for b in readme_blocks() if b.mode == "docker"]
    return [line.split("#")[0].strip() for line in block.code.splitlines() if line.strip()]


def as_run_here(command: str) -> tuple[str, list[str]]:
    """The program and arguments that carry out a README command on this machine (see the module docstring)."""
    argv = shlex.split(command)
    if argv[:2] == ["docker", "compose"]:
        argv = ["docker-compose", *argv[2:]]
        if argv[-1] == "up":
            argv.append("--detach")
    return argv[0], argv[1:]


def test_the_readme_commands_are_the_ones_run_here() -> None:
    """What the tests below carry out, in the README's order."""
    assert readme_commands() == [
        "cp .env.example .env",
        "docker compose up",
        "docker compose --profile cluster up",
        f"docker build -t signaling:{__version__} .",
    ]


class Stack:
    """A copy of the project's compose files, and the README's commands run in it."""

    def __init__(self, docker: Docker, folder: Path) -> None:
        self.docker = docker
        self.folder = folder

    def run_readme(self, index: int) -> None:
        command = readme_commands()[index]
        program, args = as_run_here(command)
        if program in ("docker", "docker-compose"):
            self.docker.run(*args, program=program, cwd=self.folder, timeout=UP_WITHIN * 2)
        else:
            subprocess.run([program, *args], cwd=self.folder, check=True, timeout=STEP)

    async def compose(self, *args: str) -> str:
        return await self.docker.arun(*args, program="docker-compose", cwd=self.folder, timeout=UP_WITHIN)

    async def local_peers(self, service: str) -> int:
        """How many peers the node of ``service`` holds (its /healthz, asked from inside its container)."""
        code = (
            "import json, urllib.request\n"
            "print(json.load(urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=5))['local_peers'])"
        )
        return int(await self.compose("exec", "-T", service, "python", "-c", code))

    async def container(self, service: str) -> dict[str, Any]:
        """``docker inspect`` of the container of ``service``."""
        (found,) = self.docker.inspect((await self.compose("ps", "-q", service)).strip())
        return found

    def down(self) -> None:
        self.docker.run(
            "--profile", "cluster", "down", "--volumes", "--remove-orphans", "--timeout", "30",
            program="docker-compose", cwd=self.folder, timeout=UP_WITHIN * 2,
        )  # fmt: skip


@pytest.fixture(scope="module")
def stack(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`cp .env.example .env` and `docker compose up` in a copy of the project (named as a clone is); `down` at
    the end, removing its containers and networks."""
    folder = tmp_path_factory.mktemp("compose") / "signaling"
    for name in PROJECT_FILES:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    limited = [name for name, service in services.items() if "ulimits" in service]
    override = {"services": {name: {"ulimits": {"nofile": {"soft": NOFILE, "hard": NOFILE}}} for name in limited}}
    (folder / "docker-compose.override.yml").write_text(
        "# Test-only: this machine's hard limit on open files is below the compose file's.\n" + yaml.dump(override)
    )
    found = Stack(docker, folder)
    found.run_readme(0)
    try:
        found.run_readme(1)
        yield found
    finally:
        found.down()


@pytest.fixture(scope="module")
def cluster_stack(stack: Stack) -> Stack:
    """`docker compose --profile cluster up`, on the running stack (the default node, Redis and coturn stay)."""
    stack.run_readme(2)
    return stack


async def node_health(port: int) -> dict[str, object]:
    await wait_until(lambda: answers(port, "/healthz"), timeout=UP_WITHIN, interval=0.1, message="no /healthz")
    status, health = await http_json(port, "/healthz")
    assert status == 200
    assert isinstance(health, dict)
    return health


async def test_up_gives_turn_credentials_coturn_accepts(stack: Stack) -> None:
    await node_health(NODE_PORT)
    async with SignalingClient.connect(f"ws://127.0.0.1:{NODE_PORT}/ws", resume=False) as client:
        welcome = await client.join("turn", name="compose")
    (turn,) = [s for s in welcome.iceServers if s.username]
    urls = [turn.urls] if isinstance(turn.urls, str) else list(turn.urls)
    assert urls == [f"turn:localhost:{TURN_PORT}?transport=udp", f"turn:localhost:{TURN_PORT}?transport=tcp"]
    assert turn.credential
    env = dict(line.split("=", 1) for line in (stack.folder / ".env").read_text().splitlines() if "=" in line)
    relays = int(env["TURN_MIN_PORT"]), int(env["TURN_MAX_PORT"])
    for transport in ("udp", "tcp"):
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, ("localhost", TURN_PORT), turn.username, turn.credential, transport=transport
        )
        try:
            host, port = relay.get_extra_info("sockname")
            assert host == env["TURN_EXTERNAL_IP"] and relays[0] <= port <= relays[1], (host, port)
        finally:
            relay.close()
    with pytest.raises(stun.TransactionFailed) as refused:
        await create_turn_endpoint(asyncio.DatagramProtocol, ("localhost", TURN_PORT), turn.username, "wrong")
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


async def test_up_gives_a_node_on_a_ready_redis(stack: Stack) -> None:
    async def redis_checked() -> bool:
        cluster = (await node_health(NODE_PORT))["cluster"]
        return isinstance(cluster, dict) and cluster["redis_settings"] is not None

    await wait_until(redis_checked, timeout=STEP, interval=0.1, message="the node never read Redis's settings")
    health = await node_health(NODE_PORT)
    cluster = health["cluster"]
    assert isinstance(cluster, dict)
    assert health["ready"] is True and (cluster["redis"], cluster["redis_settings"]) == ("up", []), health


async def joined_on(stack: Stack, url: str, service: str, room: str, tries: int = 10) -> SignalingClient:
    """A client through nginx that landed on ``service``'s node (nginx takes turns between the nodes, each of its
    workers on its own: a few tries may be needed), joined to ``room``."""
    for _ in range(tries):
        client = await SignalingClient.connect(url, resume=False)
        await client.join(room, name="bob")
        if await stack.local_peers(service) == 1:
            return client
        await client.close()
    raise AssertionError(f"nginx sent none of {tries} clients to {service}")


async def test_a_drained_node_s_client_resumes_through_nginx_and_loses_nothing(cluster_stack: Stack) -> None:
    url = f"ws://127.0.0.1:{PROXY_PORT}/ws"
    nodes = ("signaling-a", "signaling-b")
    await wait_until(
        lambda: answers(PROXY_PORT, "/healthz"), timeout=UP_WITHIN, interval=0.1, message="nginx: no /healthz"
    )
    async with SignalingClient.connect(url) as alice:
        welcome = await alice.join("drain", name="alice")
        counts = [await cluster_stack.local_peers(s) for s in nodes]
        assert sorted(counts) == [0, 1], counts
        hers, other = (nodes[0], nodes[1]) if counts[0] == 1 else (nodes[1], nodes[0])
        bob = await joined_on(cluster_stack, url, other, "drain")
        try:
            async with asyncio.timeout(STEP):
                await alice.expect(PeerJoined)
            # The second half is sent once her node has closed her connection: while she is away, then after she
            # resumed (the window holds bob until she reads again).
            stream = NumberedStream(bob, alice, welcome.peer, 400, window=50, pause_at=200)
            first = alice._ws
            async with stream.running() as tasks:
                async with asyncio.timeout(STEP):
                    await stream.until_received(150)  # well under way
                stopping = asyncio.create_task(cluster_stack.compose("stop", hers))  # SIGTERM: the drain
                async with asyncio.timeout(STEP):
                    await first.wait_closed()
                stream.go_on.set()
                async with asyncio.timeout(STEP):
                    await asyncio.gather(*tasks)
                await stopping
            assert first.close_code == CloseCode.GOING_AWAY
            assert stream.received == list(range(400))  # nothing lost, nothing twice, in order
            assert [(w.resumed, w.peer) for w in stream.welcomes] == [(True, welcome.peer)]
            assert await cluster_stack.local_peers(other) == 2  # both on the node that stayed
        finally:
            await bob.close()
    stopped = await cluster_stack.container(hers)
    assert (stopped["State"]["Status"], stopped["State"]["ExitCode"]) == ("exited", 0), stopped["State"]


def test_build_gives_the_tested_image_offline(stack: Stack) -> None:
    """The README's `docker build`, in the repository, with no network: every step comes from the install
    step's cache, so the image it tags is the one these tests ran."""
    program, args = as_run_here(readme_commands()[3])
    tag, by_content = project_tags(stack.docker)
    stack.docker.run(*args, program=program, cwd=ROOT)
    image, tested = stack.docker.image(tag), stack.docker.image(by_content)
    assert image is not None and tested is not None and image["Id"] == tested["Id"]
