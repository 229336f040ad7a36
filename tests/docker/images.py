"""Build the images the container tests run, with the network: ``python -m tests.docker.images`` (`make test-deps`).

No image registry is reachable from these machines, so the bases the project's files name (the Dockerfile's
``PYTHON_IMAGE``, the compose file's redis, coturn and nginx images) are built here as stand-ins, from Debian
packages on a debootstrap root (tests/docker/standins/), and tagged with exactly those names: the project's
Dockerfile and compose file stay unchanged and standard, and elsewhere the registry's images are used. Then the
project's image is built from its own Dockerfile.

Everything is cached by content: the Debian root and each stand-in carry a label with the hash of their recipe
(and of the image they are built on), the project's image a tag with the hash of its build context (what
.dockerignore lets through, the Dockerfile, the base image). A second run finds them and only checks.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.docker import Docker, running_engine
from tests.helpers.dockerfile import parse_dockerfile

__all__ = ["context_files", "fresh", "project_tags", "standin_tags"]

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
WORK = ROOT / ".tools" / "docker"
#: The Debian root every stand-in is built on, and how debootstrap makes it.
DEBIAN = "signaling-standin/debian:bookworm"
DEBOOTSTRAP = ("--variant=minbase", "bookworm")
#: What is dropped from that root before it is imported: the packages it was made from, the archive's index.
DEBIAN_DROP = ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*")
#: The label that carries a stand-in's recipe hash (and says it is one).
RECIPE_LABEL = "signaling.test.standin-recipe"
#: This machine's CA bundle: a stand-in whose recipe copies it trusts what this machine trusts (pip in a build).
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def project_tag() -> str:
    """The project's image, as the compose file names it (tests/test_deploy.py: the version)."""
    tag: str = compose()["services"]["signaling"]["image"]
    return tag


def standin_tags() -> dict[str, str]:
    """Each stand-in recipe (a folder of tests/docker/standins/) and the exact image name it stands in for."""
    args, _ = parse_dockerfile(ROOT / "Dockerfile")
    names = [args["PYTHON_IMAGE"]]
    names += [s["image"] for s in compose()["services"].values() if "build" not in s and "image" in s]
    tags = {name.split(":")[0].rsplit("/", 1)[-1]: name for name in names}
    missing = [recipe for recipe in tags if not (STANDINS / recipe / "Dockerfile").exists()]
    assert not missing, f"no stand-in recipe in {STANDINS} for {missing}"
    return tags


# ---------------------------------------------------------------------------------------------- content hashes


def _digest(files: Iterable[tuple[str, Path]], *extra: str) -> str:
    """sha256 of names, exec bits and contents (symlinks: their targets), and of ``extra``."""
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0")
        if path.is_symlink():
            h.update(b"link:" + str(path.readlink()).encode())
        else:
            h.update(b"x" if path.stat().st_mode & 0o111 else b"-")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    for value in extra:
        h.update(b"\0" + value.encode())
    return h.hexdigest()


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go's filepath.Match, plus ``**`` for any number of folders)."""
    out = ""
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def _rules(root: Path) -> list[tuple[bool, str, re.Pattern[str]]]:
    """(re-include?, literal prefix, regex) of each line of .dockerignore, in order: the last match wins."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        text = line.lstrip("!").strip().strip("/")
        rules.append((include, re.split(r"[*?\[]", text, maxsplit=1)[0], _pattern(text)))
    return rules


def context_files(root: Path = ROOT) -> list[str]:
    """The files of the build context: what .dockerignore lets through (a path is out when it or one of its
    folders matches an exclusion that no later ``!`` line takes back), as paths relative to ``root``."""
    rules = _rules(root)

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        out = False
        for include, _, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                out = not include
        return out

    def may_take_back(folder: str) -> bool:
        """Whether a ``!`` line could let something under this excluded folder through again."""
        return any(
            include and (not literal or literal.startswith(folder + "/") or (folder + "/").startswith(literal))
            for include, literal, _ in rules
        )

    found = []
    todo = [root]
    while todo:
        folder = todo.pop()
        for entry in sorted(folder.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if rel != ".git" and (not excluded(rel) or may_take_back(rel)):
                    todo.append(entry)
            elif not excluded(rel):
                found.append(rel)
    return sorted(found)


def context_hash(base_id: str, root: Path = ROOT) -> str:
    """What the project's image is built from: its context, the Dockerfile, .dockerignore and the base image."""
    names = {*context_files(root), "Dockerfile", ".dockerignore"}
    return _digest(((name, root / name) for name in names), base_id)


def project_tags(docker: Docker) -> tuple[str, str]:
    """The project's image tag and the tag that names its content (``<repo>:build-<hash>``) for this tree."""
    base = docker.image(standin_tags()["python"])
    assert base is not None, "no base image: run make test-deps"
    tag = project_tag()
    return tag, f"{tag.split(':')[0]}:build-{context_hash(base['Id'])[:24]}"


def stage_tag() -> str:
    """The Dockerfile's build stage, tagged: the classic builder's cache of a stage is its untagged images,
    which pruning would remove; with the tag, a rebuild and the README's `docker build` reuse it."""
    return f"{project_tag().split(':')[0]}:build-stage"


def _recipe(name: str) -> list[tuple[str, Path]]:
    files = [(p.relative_to(STANDINS / name).as_posix(), p) for p in (STANDINS / name).rglob("*") if p.is_file()]
    if "ca-certificates.crt" in (STANDINS / name / "Dockerfile").read_text():
        files.append(("ca-certificates.crt", CA_BUNDLE))
    return files


def _recipe_hash(name: str, debian_id: str) -> str:
    return _digest(_recipe(name), debian_id)


def _debian_hash() -> str:
    return hashlib.sha256(" ".join((*DEBOOTSTRAP, *DEBIAN_DROP)).encode()).hexdigest()


def fresh(docker: Docker) -> list[str]:
    """What is missing or stale for this tree (empty: the images under test are the ones it describes)."""
    problems = []
    debian = docker.image(DEBIAN)
    if debian is None or docker.labels(DEBIAN).get(RECIPE_LABEL) != _debian_hash():
        return [f"{DEBIAN} is missing or stale"]
    for recipe, tag in standin_tags().items():
        if docker.labels(tag).get(RECIPE_LABEL) != _recipe_hash(recipe, debian["Id"]):
            problems.append(f"the stand-in {tag} is missing or stale")
    if not problems:
        tag, by_content = project_tags(docker)
        image, built = docker.image(tag), docker.image(by_content)
        if image is None or built is None or image["Id"] != built["Id"]:
            problems.append(f"{tag} is missing or was not built from this tree ({by_content})")
        elif docker.image(stage_tag()) is None:
            problems.append(f"{stage_tag()} is missing")
    return problems


# ---------------------------------------------------------------------------------------------- building


def _mirror() -> str:
    """The Debian archive this machine's apt uses (its sources), for debootstrap."""
    suite = DEBOOTSTRAP[-1]
    sources = Path("/etc/apt")
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[:1].isalpha())
            if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    for path in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        for line in path.read_text().splitlines() if path.exists() else []:
            words = [w for w in line.split() if not w.startswith("[")]
            if words[:1] == ["deb"] and len(words) > 2 and words[2] == suite:
                return words[1]
    raise SystemExit(f"no apt source for Debian {suite} in {sources}: debootstrap needs one")


def build_debian(docker: Docker) -> str:
    """The Debian root (debootstrap, then ``docker import``): its image id."""
    recipe = _debian_hash()
    if docker.labels(DEBIAN).get(RECIPE_LABEL) != recipe:
        WORK.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=WORK, prefix="rootfs-") as rootfs:
            subprocess.run(
                ["debootstrap", *DEBOOTSTRAP, rootfs, _mirror()], check=True, capture_output=True, timeout=600
            )
            for pattern in DEBIAN_DROP:
                for path in Path(rootfs).glob(pattern):
                    path.unlink()
            with subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE) as tar:
                docker.run("import", "--change", f"LABEL {RECIPE_LABEL}={recipe}", "-", DEBIAN, stdin=tar.stdout)
            assert tar.returncode == 0, "tar of the debootstrap root failed"
    image = docker.image(DEBIAN)
    assert image is not None
    return str(image["Id"])


def build_standin(docker: Docker, recipe: str, tag: str, debian_id: str) -> None:
    wanted = _recipe_hash(recipe, debian_id)
    if docker.labels(tag).get(RECIPE_LABEL) == wanted:
        return
    with tempfile.TemporaryDirectory(prefix="standin-") as context:
        for name, path in _recipe(recipe):
            (Path(context) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(context) / name)
        docker.run("build", "--network=host", "--label", f"{RECIPE_LABEL}={wanted}", "-t", tag, context)


def build_project(docker: Docker) -> None:
    """The project's image from its own Dockerfile, unless one built from this very content is there."""
    tag, by_content = project_tags(docker)
    if docker.image(by_content) is not None and docker.image(stage_tag()) is not None:
        docker.run("tag", by_content, tag)
        return
    docker.run("build", "--network=host", "-t", tag, "-t", by_content, str(ROOT))
    docker.run("build", "--network=host", "--target", "build", "-t", stage_tag(), str(ROOT))  # all cached
    repository = tag.split(":")[0]
    for line in docker.run("images", repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if line.startswith(f"{repository}:build-") and line not in (by_content, stage_tag()):
            docker.run("rmi", line)  # the images of earlier trees
    docker.run("image", "prune", "--force")  # and the layers only they used


def _timed(what: str, step: Callable[[], object]) -> None:
    start = time.monotonic()
    step()
    print(f"docker images: {what} ({time.monotonic() - start:.1f} s)", flush=True)


def build_all(docker: Docker) -> None:
    debian: list[str] = []
    _timed(DEBIAN, lambda: debian.append(build_debian(docker)))
    tags = standin_tags()

    def python_then_project() -> None:
        _timed(tags["python"], lambda: build_standin(docker, "python", tags["python"], debian[0]))
        _timed(project_tag(), lambda: build_project(docker))

    others = [(recipe, tag) for recipe, tag in tags.items() if recipe != "python"]
    with ThreadPoolExecutor(len(others) + 1) as pool:
        futures = [pool.submit(python_then_project)]
        futures += [
            pool.submit(_timed, tag, functools.partial(build_standin, docker, recipe, tag, debian[0]))
            for recipe, tag in others
        ]
        for future in futures:
            future.result()
    problems = fresh(docker)
    assert not problems, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    with running_engine() as docker:
        build_all(docker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
