"""The Node.js + ``ws`` relay baseline (bench/node_relay/relay.mjs): its reproducible install and command line.

Run: python -m bench.node_ws        (installs ws if needed, prints the node and ws versions)

``ws`` comes from the committed bench/node_relay/package-lock.json (ws 8, what PeerJS server runs on): the
lockfile and package.json are copied to .tools/node-relay (git-ignored, removed by ``make clean``) and
``npm ci`` installs exactly what they pin there, without install scripts. The project's runtime and its Python
environment are not touched. Nothing happens at import: bench/bench_relay.py calls ``ensure_installed`` only
when a ``node-ws`` server is asked for, and it is skipped when the lockfile is already installed (a stamp holds
the hash of the manifests it came from). It needs ``node`` (18.3 or later; the figures are Node 20) and
``npm`` on PATH, and the npm registry the first time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["PREFIX", "SCRIPT", "command", "ensure_installed", "missing_tools", "versions"]

SOURCE = Path(__file__).resolve().parent / "node_relay"
SCRIPT = SOURCE / "relay.mjs"
PREFIX = Path(__file__).resolve().parents[1] / ".tools" / "node-relay"
MANIFESTS = ("package.json", "package-lock.json")
STAMP = ".installed-from"


def missing_tools() -> list[str]:
    """Which of ``node`` and ``npm`` are not on PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def _manifests_hash() -> str:
    digest = hashlib.sha256()
    for name in MANIFESTS:
        digest.update((SOURCE / name).read_bytes())
    return digest.hexdigest()


def _installed(prefix: Path, want: str) -> bool:
    stamp = prefix / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == want
        and (prefix / "node_modules" / "ws" / "package.json").is_file()
    )


def ensure_installed(prefix: Path = PREFIX) -> Path:
    """``npm ci`` the committed lockfile into ``prefix`` unless it is there already; returns ``prefix``."""
    want = _manifests_hash()
    if _installed(prefix, want):
        return prefix
    if missing := missing_tools():
        raise RuntimeError(f"the node-ws baseline needs {' and '.join(missing)} on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / STAMP).unlink(missing_ok=True)
    for name in MANIFESTS:
        shutil.copyfile(SOURCE / name, prefix / name)
    print(f"installing ws from {SOURCE / 'package-lock.json'} into {prefix} (npm ci)", file=sys.stderr, flush=True)
    cmd = ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    done = subprocess.run(cmd, cwd=prefix, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {prefix} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    (prefix / STAMP).write_text(want + "\n")
    return prefix


def versions(prefix: Path = PREFIX) -> dict[str, str]:
    """The versions the baseline runs on: ``node --version`` and the installed ws package."""
    if (exe := shutil.which("node")) is None:
        raise RuntimeError("the node-ws baseline needs node on PATH")
    node = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    with open(prefix / "node_modules" / "ws" / "package.json") as f:
        ws = str(json.load(f)["version"])
    return {"node": node, "ws": ws}


def command(port: int, max_seconds: float, prefix: Path = PREFIX, host: str = "127.0.0.1") -> list[str]:
    """The relay's command line: one node process, ws loaded from ``prefix``."""
    node = shutil.which("node") or "node"
    args = {"--host": host, "--port": str(port), "--max-seconds": f"{max_seconds:g}", "--prefix": str(prefix)}
    return [node, str(SCRIPT), *(part for item in args.items() for part in item)]


def main() -> None:
    prefix = ensure_installed()
    found = versions(prefix)
    print(f"node {found['node']}, ws {found['ws']} in {prefix}")


if __name__ == "__main__":
    main()
