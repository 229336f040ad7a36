"""Just enough of a Dockerfile reader for the deployment tests: stages, and their instructions in order.

Handles what the project's Dockerfile uses: line continuations, comments, ``ARG``, ``FROM ... AS``, ``ENV`` with
several ``KEY=VALUE`` pairs, exec-form (JSON) ``ENTRYPOINT``/``CMD``/``HEALTHCHECK ... CMD``, and the rest as text.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Instruction", "Stage", "parse_dockerfile"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str

    @property
    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (HEALTHCHECK: the one after CMD)."""
        text = self.text.split(" CMD ", 1)[1] if self.keyword == "HEALTHCHECK" else self.text
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"{keyword}: {found}"
        return found[0]

    @property
    def env(self) -> dict[str, str]:
        """Every ENV of the stage, later ones winning (``$PATH``-style references left as written)."""
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.text):
                key, _, value = pair.partition("=")
                out[key] = value
        return out


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, in order."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = re.sub(r"\s+", " ", rest.strip())
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages
