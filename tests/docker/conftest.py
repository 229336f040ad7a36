"""The container tests: the project's image and compose file, run for real on the project's own Docker engine.

`make test-deps` builds the images with the network (tests/docker/images.py); here the engine is started again on
the same data root, inside the suite's loopback-only network namespace, so no container can reach beyond this
machine, and it is stopped by its PID when this folder's tests are done.

**Stand-ins.** No image registry is reachable from these machines, so the bases the project's files name
(python, redis, coturn, nginx) are local stand-ins made from Debian packages (tests/docker/standins/), tagged
with those exact names. They replace the registry's images only here: the project's Dockerfile and compose file
are unchanged, and anywhere else they use the registry's images.

Fixtures
    docker     package: the started engine (`tests.helpers.docker.Docker`), its images checked against this tree;
               at the end no container or network of the tests may be left (any is removed, and the test fails).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docker.images import fresh
from tests.helpers.docker import Docker, running_engine
from tests.helpers.netns import loopback_only_problem

#: The networks every engine has (with --bridge=none there is no "bridge").
BUILTIN_NETWORKS = {"host", "none"}


def leftovers(docker: Docker) -> list[str]:
    """Containers and networks that exist on the engine beyond its own."""
    containers = docker.run("ps", "--all", "--format", "{{.Names}}").stdout.split()
    networks = set(docker.run("network", "ls", "--format", "{{.Name}}").stdout.split()) - BUILTIN_NETWORKS
    return [f"container {c}" for c in containers] + [f"network {n}" for n in sorted(networks)]


def remove_all(docker: Docker) -> None:
    """Every container and network on the engine (all are the tests': the engine is the project's own)."""
    containers = docker.ids("ps", "--all")
    if containers:
        docker.run("rm", "--force", "--volumes", *containers)
    docker.run("network", "prune", "--force")
    docker.run("volume", "prune", "--force")


@pytest.fixture(scope="package")
def docker() -> Iterator[Docker]:
    problem = loopback_only_problem()
    if problem is not None:
        pytest.fail(f"the container tests run in a loopback-only network namespace (make test), but {problem}")
    with running_engine() as engine:
        problems = fresh(engine)
        if problems:
            pytest.fail(f"{'; '.join(problems)}: run `make test-deps` (it builds the images with the network)")
        remove_all(engine)  # what an interrupted run left (containers with a restart policy come back)
        yield engine
        left = leftovers(engine)
        remove_all(engine)
        assert not left, f"the tests left these behind: {left}"
