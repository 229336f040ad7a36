"""The project's image, built from its Dockerfile by `make test-deps`, run on the project's engine (conftest.py:
its base is a local stand-in for the registry's python image, only on these machines).

- It serves: /healthz answers through a published port, the server runs as uid 10001, the image's own
  HEALTHCHECK turns it ``healthy``, a WebSocket client joins a room; `docker stop` closes that client with 1001
  and the container exits 0 well inside the grace period.
- It holds only the server: its layers above the base stay within the budget, with no compiler, no pip, no
  caches and no tests.
- The hash that says which tree an image was built from (tests/docker/images.py) covers exactly the files
  Docker sends as the build context.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling import __version__
from signaling.clients.signaling_client import SignalingClient
from signaling.ws.exceptions import ConnectionClosed
from signaling.ws.frames import CloseCode
from tests.docker.images import context_files, project_tag, standin_tags
from tests.docker.probes import answers, http_json
from tests.helpers.docker import Docker
from tests.helpers.dockerfile import parse_dockerfile
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]

#: The image's user: the Dockerfile's USER (tests/test_deploy.py: 10001, created by the Dockerfile).
UID = int(parse_dockerfile(ROOT / "Dockerfile")[1][-1].one("USER").text.split(":")[0])
#: The budget of the image's own layers, above its base (README, "Docker and compose").
LAYERS_BUDGET = 60 * 1000 * 1000
#: `docker stop`'s grace period (its default) before SIGKILL: the drain must end well inside it.
GRACE = 10
#: The HEALTHCHECK probes every 10 s (the Dockerfile): the first one comes after that.
HEALTHY_WITHIN = 30.0
STEP = 10.0


@contextlib.contextmanager
def container(docker: Docker, *args: str) -> Iterator[str]:
    """``docker run --detach ARGS`` on a network of its own; both removed at the end. The container's name."""
    name = f"signaling-test-{uuid.uuid4().hex[:8]}"
    docker.run("network", "create", name)
    try:
        docker.run("run", "--detach", "--name", name, "--network", name, *args)
        try:
            yield name
        finally:
            docker.run("rm", "--force", name)
    finally:
        docker.run("network", "rm", name)


def published_port(docker: Docker, name: str, port: int) -> int:
    """The host port docker published the container's ``port`` on (127.0.0.1 only)."""
    (line,) = docker.run("port", name, f"{port}/tcp").stdout.split()
    return int(line.rsplit(":", 1)[1])


def state(docker: Docker, name: str) -> dict[str, object]:
    (found,) = docker.inspect(name)
    result: dict[str, object] = found["State"]
    return result


def health(docker: Docker, name: str) -> object:
    """What the image's HEALTHCHECK last concluded: starting, healthy or unhealthy."""
    probes = state(docker, name).get("Health")
    return probes.get("Status") if isinstance(probes, dict) else None


async def test_the_image_serves_as_its_user_turns_healthy_and_drains_on_docker_stop(docker: Docker) -> None:
    with container(docker, "--publish", "127.0.0.1::8765", project_tag()) as name:
        port = published_port(docker, name, 8765)
        await wait_until(
            lambda: answers(port, "/healthz"),
            timeout=STEP,
            interval=0.05,
            message=lambda: f"no /healthz through the published port:\n{docker.run('logs', name).stderr[-3000:]}",
        )
        status, body = await http_json(port, "/healthz")
        assert status == 200 and body["version"] == __version__ and body["ready"] is True
        proc1 = docker.run("exec", name, "cat", "/proc/1/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", proc1, re.MULTILINE)
        assert uids is not None and uids.group(1).split() == [str(UID)] * 4, proc1  # real, effective, saved, fs
        assert docker.run("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")[1:3] == [
            "/opt/signaling/bin/signaling",
            "serve",
        ]
        async with SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", resume=False) as client:
            welcome = await client.join("docker", name="in-a-container")
            assert welcome.room == "docker" and welcome.peers == []
            await wait_until(
                lambda: health(docker, name) == "healthy",
                timeout=HEALTHY_WITHIN,
                interval=0.2,
                message=lambda: f"the HEALTHCHECK did not report healthy: {state(docker, name).get('Health')}",
            )
            loop = asyncio.get_running_loop()
            started = loop.time()
            await docker.arun("stop", "--time", str(GRACE), name)
            stopped = loop.time() - started
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(STEP):
                    await client.recv()
            assert closed.value.code == CloseCode.GOING_AWAY
        final = state(docker, name)
        assert (final["Status"], final["ExitCode"], final["OOMKilled"]) == ("exited", 0, False), final
        assert stopped < GRACE / 2, f"the drain took {stopped:.1f} s of the {GRACE} s grace period"
        assert '"event": "stopped"' in docker.run("logs", name).stderr + docker.run("logs", name).stdout


def test_the_image_holds_only_the_server_within_its_budget(docker: Docker) -> None:
    image, base = docker.image(project_tag()), docker.image(standin_tags()["python"])
    assert image is not None and base is not None
    layers = docker.run("history", "--format", "{{.Size}}\t{{.CreatedBy}}", project_tag()).stdout
    above = image["Size"] - base["Size"]
    assert 0 < above <= LAYERS_BUDGET, f"{above / 1e6:.1f} MB above the base:\n{layers}"
    print(f"{project_tag()}: {above / 1e6:.1f} MB above the base, {image['Size'] / 1e6:.1f} MB in all")
    # What a look inside finds: nothing to compile or install with, no caches, no tests.
    script = (
        "import importlib.util, os, shutil, sys\n"
        "print('compilers', [c for c in ('cc', 'gcc', 'c++', 'g++', 'clang', 'make') if shutil.which(c)])\n"
        "print('installers', [m for m in ('pip', 'setuptools', 'ensurepip') if importlib.util.find_spec(m)])\n"
        "caches = ['/root/.cache', '/tmp', '/src']\n"
        "print('caches', [p for p in caches if os.path.isdir(p) and os.listdir(p)])\n"
        "print('tests', sorted({r for r, d, _ in os.walk('/opt/signaling') for x in d if x in ('tests', 'test')}))\n"
    )
    out = docker.run("run", "--rm", "--entrypoint", "python", project_tag(), "-c", script).stdout
    found = dict(line.split(" ", 1) for line in out.splitlines())
    # ensurepip is in the standard library of the base (and `python -m venv` needs it): not ours to remove.
    assert found == {"compilers": "[]", "installers": "['ensurepip']", "caches": "[]", "tests": "[]"}, out


def test_the_content_hash_covers_the_build_context_docker_sees(docker: Docker, tmp_path: Path) -> None:
    """The files Docker sends for this tree (.dockerignore applied by Docker itself), listed from inside a build,
    are the ones images.py hashes: a change to any of them makes a new image, and nothing else does."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {standin_tags()['python']}\nCOPY . /context\nRUN cd /context && find . -type f | sort > /files\n"
    )
    tag = f"signaling-test-context:{uuid.uuid4().hex[:8]}"
    docker.run("build", "--quiet", "--file", str(tmp_path / "Dockerfile"), "--tag", tag, str(ROOT))
    try:
        listed = docker.run("run", "--rm", "--entrypoint", "cat", tag, "/files").stdout.split()
    finally:
        docker.run("rmi", tag)
    sent = {name.removeprefix("./") for name in listed}
    # The Dockerfile (ours or the one named by --file) and .dockerignore are hashed whether or not they are sent.
    sent = {
        name for name in sent if name not in ("Dockerfile", ".dockerignore") and not name.startswith(".dockerfile.")
    }
    assert sorted(sent) == context_files()
