"""RFC 6455 conformance: Autobahn|Testsuite's fuzzingclient against ``signaling serve --echo``.

wstest runs under Python 2.7 from ``.venv27`` (``make autobahn-env``). It exits 0 whatever the results (even
when the server is down), so the verdict comes from parsing ``index.json`` and the per-case JSON files.

Artifacts (gitignored), kept after the run:
  test-artifacts/autobahn/reports/index.html   the full HTML report
  test-artifacts/autobahn/summary.txt          counts and details of every case that is not OK
  test-artifacts/autobahn/wstest.log           wstest's output; the server log is under test-artifacts/logs/

Verdict per case:
  pass          behavior OK / INFORMATIONAL and behaviorClose OK / INFORMATIONAL
  non-strict    behavior NON-STRICT, or behaviorClose "FAILED BY CLIENT" (server did not close the TCP
                connection): fails the test unless the case id is in ALLOWED_NON_STRICT with a reason
  failure       anything else (FAILED, UNIMPLEMENTED, WRONG CODE, UNCLEAN, unknown values)

To point the harness at another echo server (e.g. a reference implementation, to compare), set
AUTOBAHN_SERVER_CMD to a command line containing {host} and {port}; it is started instead of
``signaling serve --echo``. Never set in CI.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server_process import (
    ARTIFACTS_DIR,
    REPO_ROOT,
    ServerProcess,
    running_process,
    running_server,
)

pytestmark = pytest.mark.compliance

WSTEST = REPO_ROOT / ".venv27" / "bin" / "wstest"
OUT_ROOT = ARTIFACTS_DIR / "autobahn"
REPORTS_DIR = OUT_ROOT / "reports"
SUMMARY_PATH = OUT_ROOT / "summary.txt"
WSTEST_LOG = OUT_ROOT / "wstest.log"
WSTEST_TIMEOUT = 300.0
SERVER_CMD_ENV = "AUTOBAHN_SERVER_CMD"

MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # 9.* sends messages up to 16 MiB
CASES = ["*"]
EXCLUDED_CASES = ["12.*", "13.*"]  # permessage-deflate: the server does not negotiate compression

# Case count per chapter for autobahntestsuite 25.10.1 with EXCLUDED_CASES (301 in total). Chapters 8 and 11
# do not exist. A mismatch means wstest stopped early, the spec is wrong, or the pinned suite changed.
EXPECTED_CASES_PER_CHAPTER: dict[int, int] = {1: 16, 2: 11, 3: 7, 4: 10, 5: 20, 6: 145, 7: 37, 9: 54, 10: 1}

# Cases whose NON-STRICT outcome is accepted, as {case id: reason}. The goal is to keep this EMPTY.
ALLOWED_NON_STRICT: dict[str, str] = {}

PASS_VALUES = frozenset({"OK", "INFORMATIONAL"})
NON_STRICT_BEHAVIOR = frozenset({"NON-STRICT"})
NON_STRICT_CLOSE = frozenset({"NON-STRICT", "FAILED BY CLIENT"})

_DETAIL_LIMIT = 400


# -- report parsing --


def case_key(case_id: str) -> tuple[int, ...]:
    """Numeric sort key: '9.10.2' after '9.2.1'."""
    return tuple(int(part) if part.isdigit() else -1 for part in case_id.split("."))


def _plain(value: Any, limit: int = _DETAIL_LIMIT) -> str:
    """Descriptions contain HTML (<br>, &quot;); reports repeat long payloads. Make them short plain text."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", str(value)))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    remote_close_code: int | None
    details: Mapping[str, Any]  # the per-case JSON (empty if it could not be read)
    report_html: Path

    @property
    def verdict(self) -> str:
        """'pass', 'non-strict' or 'failure' (see module docstring)."""
        behavior_ok = self.behavior in PASS_VALUES or self.behavior in NON_STRICT_BEHAVIOR
        close_ok = self.behavior_close in PASS_VALUES or self.behavior_close in NON_STRICT_CLOSE
        if not (behavior_ok and close_ok):
            return "failure"
        if self.behavior in NON_STRICT_BEHAVIOR or self.behavior_close in NON_STRICT_CLOSE:
            return "non-strict"
        return "pass"

    def format(self) -> str:
        d = self.details
        close = f"server close code {d.get('remoteCloseCode', self.remote_close_code)}"
        reason = d.get("remoteCloseReason")
        if reason not in (None, "None", ""):
            close += f" reason {_plain(reason)!r}"
        close += f", wasClean={d.get('wasClean', '?')}, droppedByMe={d.get('droppedByMe', '?')}"
        not_clean = d.get("wasNotCleanReason")
        if not_clean not in (None, "None", ""):
            close += f" ({_plain(not_clean)})"
        lines = [
            f"{self.case_id}: behavior={self.behavior}, behaviorClose={self.behavior_close}, {self.duration_ms} ms",
            f"    description: {_plain(d.get('description', '?'))}",
            f"    expectation: {_plain(d.get('expectation', '?'))}",
            f"    result:      {_plain(d.get('result', '?'))}",
            f"    close:       {_plain(d.get('resultClose', '?'))}; {close}",
            f"    expected:    {_plain(d.get('expected', '?'))}",
            f"    received:    {_plain(d.get('received', '?'))}",
        ]
        if not self.details:
            lines.append("    (per-case JSON missing or unreadable)")
        lines.append(f"    report:      {self.report_html}")
        return "\n".join(lines)


def load_results(reports_dir: Path, agent: str) -> list[CaseResult]:
    index_path = reports_dir / "index.json"
    if not index_path.is_file():
        raise AssertionError(f"wstest wrote no {index_path}")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if agent not in index:
        raise AssertionError(
            f"agent {agent!r} missing from {index_path} (agents: {sorted(index)}): wstest probably could not "
            "connect to the server, or the server failed every opening handshake"
        )
    results = []
    for case_id, entry in index[agent].items():
        report = str(entry.get("reportfile", ""))
        try:
            details = json.loads((reports_dir / report).read_text(encoding="utf-8")) if report else {}
        except (OSError, ValueError):
            details = {}
        code = entry.get("remoteCloseCode")
        results.append(
            CaseResult(
                case_id=case_id,
                behavior=str(entry.get("behavior")),
                behavior_close=str(entry.get("behaviorClose")),
                duration_ms=int(entry.get("duration") or 0),
                remote_close_code=int(code) if code is not None else None,
                details=details,
                report_html=(reports_dir / report).with_suffix(".html"),
            )
        )
    return sorted(results, key=lambda r: case_key(r.case_id))


def coverage_problems(results: list[CaseResult]) -> list[str]:
    """Check that every expected chapter ran completely."""
    counts = Counter(r.case_id.split(".")[0] for r in results)
    problems = []
    for chapter, expected in EXPECTED_CASES_PER_CHAPTER.items():
        got = counts.pop(str(chapter), 0)
        if got != expected:
            problems.append(f"chapter {chapter}.*: {got} cases, expected {expected}")
    for extra, n in sorted(counts.items()):
        problems.append(f"chapter {extra}.*: {n} unexpected cases (excluded: {EXCLUDED_CASES})")
    expected_total = sum(EXPECTED_CASES_PER_CHAPTER.values())
    if len(results) != expected_total:
        problems.append(f"{len(results)} cases in total, expected {expected_total}")
    return problems


def summary_line(agent: str, url: str, results: list[CaseResult]) -> str:
    def counts(values: Iterator[str]) -> str:
        return ", ".join(f"{value} {n}" for value, n in Counter(values).most_common())

    return (
        f"autobahn: {len(results)} cases against {agent} ({url}): "
        f"behavior: {counts(r.behavior for r in results)} | "
        f"close: {counts(r.behavior_close for r in results)} | "
        f"report: {REPORTS_DIR / 'index.html'}"
    )


# -- running --


@dataclass(frozen=True)
class WstestTarget:
    """The echo server wstest fuzzes (a subprocess), as its report names it."""

    agent: str
    url: str
    description: str
    server: ServerProcess

    def server_notes(self) -> str:
        """Problems visible on the server side (died during the run, tracebacks in its log), or ''."""
        notes = []
        if not self.server.is_running:
            notes.append(f"the server is not running any more (it died during the run)\n{self.server.describe()}")
        tracebacks = self.server.log_text().count("Traceback (most recent call last)")
        if tracebacks:
            notes.append(f"{tracebacks} traceback(s) in the server log {self.server.log_path}")
        return "\n".join(notes)


@pytest.fixture
def wstest_target() -> Iterator[WstestTarget]:
    """The WebSocket echo server under test (ours by default; see AUTOBAHN_SERVER_CMD). Not tests/conftest.py's
    in-process ``echo_server``: wstest needs a process of its own."""
    command = os.environ.get(SERVER_CMD_ENV)
    if command:
        with running_process(shlex.split(command), name="autobahn-external-echo") as srv:
            yield WstestTarget("external", srv.url, f"external echo server from ${SERVER_CMD_ENV}: {command}", srv)
        return
    # The fuzzer's 9.* cases send 16 MiB messages in up to 262,144 frames as fast as loopback goes: conformance is
    # what is tested here, so the policy limits on top of RFC 6455 (fragments per message, frames per second) are
    # lifted; tests/ws/aio/test_server_abuse.py tests them.
    args = ("--echo", "--max-message-size", str(MAX_MESSAGE_SIZE), "--max-fragments", "1000000", "--frame-rate", "0")
    with running_server(*args, name="autobahn-echo") as srv:
        yield WstestTarget("signaling", srv.url, f"signaling serve --echo, log {srv.log_path}", srv)


def run_wstest(target: WstestTarget) -> None:
    if REPORTS_DIR.exists():
        shutil.rmtree(REPORTS_DIR)  # never read a stale index.json from an earlier run
    REPORTS_DIR.mkdir(parents=True)
    spec = {
        "options": {"failByDrop": False},
        "outdir": "./reports",  # relative to cwd=OUT_ROOT
        "servers": [{"agent": target.agent, "url": target.url}],
        "cases": CASES,
        "exclude-cases": EXCLUDED_CASES,
        "exclude-agent-cases": {},
    }
    spec_path = OUT_ROOT / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    argv = [str(WSTEST), "-m", "fuzzingclient", "-s", spec_path.name]
    with open(WSTEST_LOG, "wb") as log:
        try:
            proc = subprocess.run(
                argv,
                cwd=OUT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=WSTEST_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"wstest did not finish within {WSTEST_TIMEOUT:.0f} s\n{_wstest_log_tail()}")
    if proc.returncode != 0:
        pytest.fail(f"wstest exited with {proc.returncode}\n{_wstest_log_tail()}")


def _wstest_log_tail(chars: int = 4000) -> str:
    text = WSTEST_LOG.read_text(encoding="utf-8", errors="replace") if WSTEST_LOG.exists() else ""
    return f"----- {WSTEST_LOG} (tail) -----\n{text[-chars:]}"


def write_summary(
    line: str,
    target: WstestTarget,
    failures: list[CaseResult],
    non_strict: list[CaseResult],
    allowed: list[CaseResult],
    informational: list[CaseResult],
    stale_allowed: list[str],
) -> str:
    parts = [line, f"target: {target.description}", ""]
    if notes := target.server_notes():
        parts += [f"SERVER: {notes}", ""]
    if failures:
        parts += [f"FAILURES ({len(failures)}):", *(r.format() for r in failures), ""]
    if non_strict:
        parts += [
            f"NON-STRICT, not allow-listed ({len(non_strict)}): fix them, or add them with a reason to "
            "ALLOWED_NON_STRICT in tests/compliance/test_autobahn.py",
            *(r.format() for r in non_strict),
            "",
        ]
    if allowed:
        parts += [f"NON-STRICT, allow-listed ({len(allowed)}):"]
        parts += [f"{r.format()}\n    allowed because: {ALLOWED_NON_STRICT[r.case_id]}" for r in allowed]
        parts.append("")
    if informational:
        parts += [f"INFORMATIONAL ({len(informational)}): {', '.join(r.case_id for r in informational)}", ""]
    if stale_allowed:
        parts += [
            f"ALLOWED_NON_STRICT entries that are not NON-STRICT any more: {', '.join(stale_allowed)}",
            "",
        ]
    text = "\n".join(parts)
    SUMMARY_PATH.write_text(text, encoding="utf-8")
    return text


@pytest.mark.timeout(WSTEST_TIMEOUT + 120)
def test_autobahn_fuzzingclient(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    if not os.access(WSTEST, os.X_OK):
        pytest.fail(
            f"{WSTEST} is missing: Autobahn|Testsuite needs its Python 2.7 environment. "
            "Run `make autobahn-env` (scripts/install-autobahn.sh) and try again."
        )
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    for stale in (SUMMARY_PATH, WSTEST_LOG):
        stale.unlink(missing_ok=True)

    # The server is a fixture started only now, after the wstest check, so a missing wstest fails fast.
    target: WstestTarget = request.getfixturevalue("wstest_target")
    run_wstest(target)
    try:
        results = load_results(REPORTS_DIR, target.agent)
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{target.server_notes()}\n{_wstest_log_tail()}")

    line = summary_line(target.agent, target.url, results)
    with capsys.disabled():  # the one-line summary shows even when the test passes
        print(f"\n{line}")

    failures = [r for r in results if r.verdict == "failure"]
    flagged = [r for r in results if r.verdict == "non-strict"]
    non_strict = [r for r in flagged if r.case_id not in ALLOWED_NON_STRICT]
    allowed = [r for r in flagged if r.case_id in ALLOWED_NON_STRICT]
    informational = [r for r in results if "INFORMATIONAL" in (r.behavior, r.behavior_close)]
    stale_allowed = sorted(set(ALLOWED_NON_STRICT) - {r.case_id for r in flagged}, key=case_key)
    summary = write_summary(line, target, failures, non_strict, allowed, informational, stale_allowed)

    problems = coverage_problems(results)
    if problems or failures or non_strict:
        head = []
        if problems:
            head.append("incomplete run: " + "; ".join(problems))
        if failures:
            head.append(f"{len(failures)} failing case(s): {', '.join(r.case_id for r in failures)}")
        if non_strict:
            head.append(f"{len(non_strict)} NON-STRICT case(s): {', '.join(r.case_id for r in non_strict)}")
        message = "Autobahn: " + "\n".join(head) + f"\n(summary: {SUMMARY_PATH})\n\n{summary}"
        if problems:
            message += f"\n{_wstest_log_tail()}"
        pytest.fail(message, pytrace=False)
