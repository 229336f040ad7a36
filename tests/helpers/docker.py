"""The project's private Docker engine (scripts/docker-engine.sh) and the ``docker``/``docker-compose`` commands run
against it, for the image builder (tests/docker/images.py) and the container tests (tests/docker/).

The engine is Debian's dockerd on its own socket and data root under .tools/docker/, started and stopped by its
PID; nothing here talks to the machine's own Docker, if it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENGINE_SCRIPT", "Docker", "DockerError", "running_engine"]

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts" / "docker-engine.sh"
#: Long enough for a build step that installs packages; every call has a bound.
DEFAULT_TIMEOUT = 600.0


class DockerError(AssertionError):
    """A docker or docker-compose command failed: the message quotes its command and output."""


def _engine(command: str) -> str:
    done = subprocess.run(["bash", str(ENGINE_SCRIPT), command], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DockerError(f"{ENGINE_SCRIPT.name} {command}: {done.stdout}{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Docker:
    """Runs ``docker`` (the engine's own client) and ``docker-compose`` against the engine ``env`` points at."""

    env: Mapping[str, str]

    @classmethod
    def from_script(cls) -> Docker:
        """The variables of ``docker-engine.sh env`` (socket, client config, classic builder), over ours."""
        lines = dict(line.split("=", 1) for line in _engine("env").splitlines() if "=" in line)
        return cls({**os.environ, **lines})

    @property
    def client(self) -> str:
        return self.env["DOCKER_CLIENT"]

    def _argv(self, program: str, args: Sequence[str]) -> list[str]:
        return [self.client if program == "docker" else program, *args]

    def _check(self, argv: Sequence[str], code: int, out: str, err: str) -> None:
        if code != 0:
            raise DockerError(f"{' '.join(argv)} -> {code}\n{out[-4000:]}\n{err[-4000:]}")

    def run(
        self,
        *args: str,
        program: str = "docker",
        cwd: Path | None = None,
        stdin: Any = None,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` (or ``docker-compose ARGS``); raises DockerError when it fails and ``check``."""
        argv = self._argv(program, args)
        done = subprocess.run(
            argv, cwd=cwd, env=dict(self.env), stdin=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check:
            self._check(argv, done.returncode, done.stdout, done.stderr)
        return done

    async def arun(
        self,
        *args: str,
        program: str = "docker",
        cwd: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (every call is bounded; the bound is the command's)
    ) -> str:
        """`run` without blocking the event loop (clients keep reading while a container stops): its stdout."""
        argv = self._argv(program, args)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=dict(self.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DockerError(f"{' '.join(argv)}: no answer in {timeout:g} s") from None
        assert proc.returncode is not None
        self._check(argv, proc.returncode, out.decode(), err.decode())
        return out.decode()

    def inspect(self, *names: str, kind: str = "container") -> list[dict[str, Any]]:
        """``docker <kind> inspect`` of what exists among ``names`` (missing ones are left out)."""
        done = self.run(kind, "inspect", *names, check=False)
        found: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return found

    def image(self, tag: str) -> dict[str, Any] | None:
        """The image ``tag`` names, or None."""
        found = self.inspect(tag, kind="image")
        return found[0] if found else None

    def labels(self, tag: str) -> dict[str, str]:
        image = self.image(tag)
        return dict((image or {}).get("Config", {}).get("Labels") or {})

    def ids(self, *args: str) -> list[str]:
        """The ids ``docker ARGS -q`` lists (e.g. ``ps -a``, ``network ls``)."""
        return self.run(*args, "-q").stdout.split()


@contextlib.contextmanager
def running_engine() -> Iterator[Docker]:
    """The engine, started (a leftover of ours is stopped first), and stopped by its PID at the end."""
    _engine("start")
    try:
        yield Docker.from_script()
    finally:
        _engine("stop")
