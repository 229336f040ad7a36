"""The README's code blocks and how each is tested: the comment before every fenced block names its mode.

    <!-- readme-test: MODE [key=value ...] [(why, for the reader)] -->
    ```sh
    ...
    ```

Modes (tests/test_readme.py and tests/e2e/test_readme_js.py carry them out): ``run`` (runs to exit status 0),
``serve port=P`` (a server that must answer /healthz, then drain on SIGTERM), ``serve-check port=P`` (the first
line starts a server, the others run against it), ``background ports=A,B,..`` (starts processes in the
background; every port must answer), ``peer port=P`` and ``python port=P`` (run against a live server),
``js`` (a module in Chromium on a live server's page), ``receiver port=P`` (a webhook receiver: a server sends it
a room's events, which it must print), ``json`` (protocol messages, checked by the models),
``docker`` (carried out on the project's own Docker engine by tests/docker/test_compose.py), ``kubernetes`` (needs a
cluster: the files those commands use are checked instead), ``dry-run`` (``make -n``).
Ports named in a mode are replaced by free ones before the block runs: tests use free loopback ports only.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODES", "Block", "readme_blocks"]

README = Path(__file__).resolve().parents[2] / "README.md"
MODES = frozenset(
    {
        "run", "serve", "serve-check", "background", "peer", "python", "js", "json", "docker", "kubernetes", "dry-run",
        "receiver",
    }
)  # fmt: skip
_DIRECTIVE = re.compile(r"<!-- readme-test: (?P<mode>[\w-]+)(?P<args>(?: \w+=[\w,]+)*)(?: \(.*\))? -->")


@dataclass(frozen=True)
class Block:
    mode: str
    language: str
    code: str
    line: int
    args: dict[str, str] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        spec = self.args.get("port") or self.args.get("ports") or ""
        return [int(p) for p in spec.split(",") if p]

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.mode})"


def readme_blocks(path: Path = README) -> list[Block]:
    """Every fenced block with its mode. Raises AssertionError for a block without one, or an unknown mode."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith("```"):
            i += 1
            continue
        language = stripped[3:].strip()
        start = i
        j = i + 1
        while not lines[j].strip().startswith("```"):
            j += 1
        code = textwrap.dedent("\n".join(lines[start + 1 : j])) + "\n"
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        match = _DIRECTIVE.fullmatch(lines[k].strip()) if k >= 0 else None
        assert match is not None, f"README.md:{start + 1}: a code block without a <!-- readme-test: ... --> comment"
        mode = match.group("mode")
        assert mode in MODES, f"README.md:{start + 1}: unknown mode {mode!r}"
        args = dict(pair.split("=", 1) for pair in match.group("args").split())
        blocks.append(Block(mode, language, code, start + 1, args))
        i = j + 1
    return blocks
