"""End-to-end fixtures: Debian's Chromium, driven by Playwright, against our own servers on loopback.

Run these tests through ``make test`` (or ``make pytest``), which runs pytest inside ``unshare -n`` with only
``lo`` up, so that Chromium can neither reach nor gather ICE candidates on the machine's real interfaces::

    unshare -n bash -c 'ip link set lo up && exec .venv/bin/python -m pytest tests/e2e -v'

Outside such a namespace every e2e test fails (never skips) with a message saying so.

Event loops
    Every async test in this folder runs on pytest-asyncio's *session* event loop: ``pytest_collection_modifyitems``
    below gives each one ``pytest.mark.asyncio(loop_scope="session")`` unless the test chose a loop scope itself.
    That lets one Chromium (about 1.5 s to launch) serve the whole session, since Playwright objects belong to the
    loop they were made on. The in-process server fixtures of ``tests/conftest.py`` run on the *function* loop,
    which is not running during a session-loop test, so this file redefines them under the same names with
    ``loop_scope="session"``: ``start_server``, ``echo_server``, ``start_signaling``, ``signaling_server`` behave as
    there (function scope: closed, 1001 to whatever is connected, when the test ends), on the test's loop.
    Any new async fixture in this folder must say ``@pytest_asyncio.fixture(loop_scope="session")``.
    Subprocess servers (``tests/helpers/server_process.py``'s ``async_running_server``) work on any loop.

Fixtures
    loopback_only_network  session, autouse: fails unless only loopback interfaces are up (see above).
    playwright             session: the started async Playwright.
    browser                session: headless Chromium (/usr/bin/chromium, CHROMIUM_ARGS: fake camera and
                           microphone granted without a prompt, loopback ICE candidates, raw IPs, no mDNS).
    launch_browser         function: ``await launch_browser(extra_args=[...], drop_args=[...], **launch_kwargs)``,
                           another Chromium closed at the end (e.g. without ``--use-fake-ui-for-media-stream``).
    new_context            function: ``await new_context(in_browser=None, **context_kwargs)``; defaults
                           ``ignore_https_errors=True`` (self-signed certificates), 10 s default timeouts. Every
                           context is watched: console errors and uncaught page errors fail the test at
                           teardown, and when a test fails each open page's screenshot, the Playwright trace
                           and the console log go to ``test-artifacts/e2e/failures/<test>/``.
    context, page          function: one context from ``new_context()`` and one page in it.
    browser_errors         function: what the watched contexts logged (``.errors``, ``.log``); ``.allow(regex)``
                           accepts expected errors. ``@pytest.mark.allow_console_errors(*regexes)`` does the same
                           for a whole test (no argument: any error).
    artifacts_dir          function: ``test-artifacts/e2e/<test>/`` (created; gitignored) for screenshots a test
                           takes on purpose.
    tls_cert               function: ``TlsCert(certfile, keyfile)``, a throwaway self-signed certificate for
                           localhost, 127.0.0.1 and ::1 (openssl CLI) in tmp_path; ``.client_context()`` trusts it.
    start_signaling        function: ``await start_signaling(**Settings fields)`` -> WebSocketServer on 127.0.0.1,
                           free port; with ``certfile=``/``keyfile=`` it serves https:// and wss:// (hot reload
                           of the files is not wired here; ``signaling serve`` does that).
    server_url             function: ``server_url(server, path="/", ws=False)`` -> ``http(s)://127.0.0.1:P/path``
                           or ``ws(s)://...``, the scheme following the server's TLS.
    start_server, echo_server, signaling_server: as in tests/conftest.py, on the session loop.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    WebError,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from signaling.app.echo import EchoApp
from signaling.ws.aio.server import WebSocketServer
from tests.helpers import inprocess
from tests.helpers.certs import CertPair, make_cert
from tests.helpers.inprocess import InProcessServers
from tests.helpers.netns import loopback_only_problem

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "e2e"
FAILURES_DIR = ARTIFACTS_DIR / "failures"
PAGES_DIR = E2E_DIR / "pages"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # runs as root in CI
    "--use-fake-ui-for-media-stream",  # grant getUserMedia without a prompt
    "--use-fake-device-for-media-stream",  # test-pattern camera, beeping microphone
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",  # without it, no ICE candidates at all in the loopback namespace
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # raw 127.0.0.1 candidates (aiortc cannot resolve .local)
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--autoplay-policy=no-user-gesture-required",  # remote <video> plays without a click
)
DEFAULT_TIMEOUT_MS = 10_000
TRACING = True  # Playwright trace per context, saved only when the test fails (no measurable cost here)

ServerFactory = Callable[..., Awaitable[WebSocketServer]]


# ---------------------------------------------------------------------------------------------- collection


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_console_errors(*patterns): browser console/page errors matching a pattern (re.search) do not fail "
        "the test; without patterns, none do",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not Path(str(item.path)).resolve().is_relative_to(E2E_DIR):
            continue
        item.add_marker(pytest.mark.e2e)
        markers = list(item.iter_markers("asyncio"))
        if markers and not any("loop_scope" in m.kwargs or "scope" in m.kwargs for m in markers):
            # Prepended, so it is the closest marker: the test runs on the loop the session browser lives on.
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _test_failed(node: pytest.Item) -> bool:
    reports = node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


# ---------------------------------------------------------------------------------- loopback-only network


@pytest.fixture(scope="session", autouse=True)
def loopback_only_network() -> None:
    """Every e2e test runs where only loopback exists: browsers must not see (or leak to) real interfaces."""
    problem = loopback_only_problem()
    if problem is not None:
        pytest.fail(
            f"The e2e tests must run in a loopback-only network namespace, but {problem}.\n"
            "Run them with `make test` (or `make pytest PYTEST_ARGS=tests/e2e`), or by hand:\n"
            "    unshare -n bash -c 'ip link set lo up && exec .venv/bin/python -m pytest tests/e2e'",
            pytrace=False,
        )


# ------------------------------------------------------------------------------------------ browsers


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playwright(loopback_only_network: None) -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


async def _launch(
    pw: Playwright, extra_args: Iterable[str] = (), drop_args: Iterable[str] = (), **kwargs: Any
) -> Browser:
    dropped = set(drop_args)
    args = [a for a in CHROMIUM_ARGS if a not in dropped] + list(extra_args)
    kwargs.setdefault("headless", True)
    # Never `playwright install`: Debian's chromium is the browser, and nothing is downloaded.
    return await pw.chromium.launch(executable_path=CHROMIUM, args=args, **kwargs)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await _launch(playwright)
    yield browser
    await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def launch_browser(playwright: Playwright) -> AsyncIterator[Callable[..., Awaitable[Browser]]]:
    """``await launch_browser(extra_args=(), drop_args=(), **launch_kwargs)``: a separate Chromium for this test."""
    launched: list[Browser] = []

    async def launch(extra_args: Iterable[str] = (), drop_args: Iterable[str] = (), **kwargs: Any) -> Browser:
        b = await _launch(playwright, extra_args, drop_args, **kwargs)
        launched.append(b)
        return b

    yield launch
    for b in launched:
        with contextlib.suppress(PlaywrightError):
            await b.close()


# ------------------------------------------------------------------------------ console errors, artifacts


@dataclass
class BrowserErrors:
    """Console errors and uncaught page errors of every watched context during one test."""

    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # every console message, for the failure artifacts
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Errors matching ``pattern`` (re.search) do not fail the test."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def on_console(self, msg: ConsoleMessage) -> None:
        location = msg.location
        where = f"{location.get('url', '')}:{location.get('lineNumber', 0)}" if location else ""
        line = f"console.{msg.type} {where}: {msg.text}"
        self.log.append(line)
        if msg.type == "error":
            self.errors.append(line)

    def on_web_error(self, error: WebError) -> None:
        line = f"uncaught page error: {error.error.message}"
        if error.error.stack:
            line += f"\n{error.error.stack}"
        self.log.append(line)
        self.errors.append(line)


@pytest.fixture
def browser_errors(request: pytest.FixtureRequest) -> BrowserErrors:
    errors = BrowserErrors()
    marker = request.node.get_closest_marker("allow_console_errors")
    if marker is not None:
        for pattern in marker.args or (".*",):
            errors.allow(pattern)
    return errors


def _test_dir_name(node: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid.removeprefix("tests/e2e/")).strip("_")


def failure_dir(node: pytest.Item) -> Path:
    """test-artifacts/e2e/failures/<test>/: what a failed test leaves behind (emptied when the test starts)."""
    return FAILURES_DIR / _test_dir_name(node)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """test-artifacts/e2e/<test>/ (created, kept): for screenshots a test writes on purpose."""
    path = ARTIFACTS_DIR / _test_dir_name(request.node)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _save_artifacts(node: pytest.Item, index: int, ctx: BrowserContext, errors: BrowserErrors) -> None:
    out = failure_dir(node)
    out.mkdir(parents=True, exist_ok=True)
    for n, pg in enumerate(ctx.pages):
        with contextlib.suppress(PlaywrightError):
            await pg.screenshot(path=out / f"context{index}-page{n}.png", full_page=True)
    if TRACING:
        with contextlib.suppress(PlaywrightError):
            await ctx.tracing.stop(path=out / f"context{index}-trace.zip")
    (out / "console.log").write_text("\n".join(errors.log) + "\n", encoding="utf-8")


@pytest_asyncio.fixture(loop_scope="session")
async def new_context(
    request: pytest.FixtureRequest, browser: Browser, browser_errors: BrowserErrors
) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """``await new_context(in_browser=None, **context_kwargs)``: a fresh, watched context (see the docstring)."""
    contexts: list[BrowserContext] = []
    shutil.rmtree(failure_dir(request.node), ignore_errors=True)  # from an earlier run

    async def make(in_browser: Browser | None = None, **kwargs: Any) -> BrowserContext:
        kwargs.setdefault("ignore_https_errors", True)
        ctx = await (in_browser or browser).new_context(**kwargs)
        ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
        ctx.on("console", browser_errors.on_console)
        ctx.on("weberror", browser_errors.on_web_error)
        if TRACING:
            await ctx.tracing.start(screenshots=True, snapshots=True)
        contexts.append(ctx)
        return ctx

    yield make
    failed = _test_failed(request.node)
    for index, ctx in enumerate(contexts):
        with contextlib.suppress(PlaywrightError):  # its browser may be gone already
            if failed:
                await _save_artifacts(request.node, index, ctx, browser_errors)
            elif TRACING:
                await ctx.tracing.stop()
            await ctx.close()
    unexpected = browser_errors.unexpected()
    if unexpected:
        report = "\n".join(unexpected)
        if failed:
            print(f"browser errors during the failed test:\n{report}")  # shown with the failure
        else:
            pytest.fail(
                f"browser console/page errors (allow expected ones with browser_errors.allow(regex) or "
                f"@pytest.mark.allow_console_errors):\n{report}",
                pytrace=False,
            )


@pytest_asyncio.fixture(loop_scope="session")
async def context(new_context: Callable[..., Awaitable[BrowserContext]]) -> BrowserContext:
    return await new_context()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


# ----------------------------------------------------------------------------------------------- TLS


TlsCert = CertPair


@pytest.fixture
def tls_cert(tmp_path: Path) -> TlsCert:
    return make_cert(tmp_path, "localhost")


# ------------------------------------------------------------------- in-process servers (session loop)


@pytest_asyncio.fixture(loop_scope="session")
async def inprocess_servers() -> AsyncIterator[InProcessServers]:
    """As tests/conftest.py's, on the session loop."""
    servers = InProcessServers()
    yield servers
    await servers.close()


@pytest.fixture
def start_server(inprocess_servers: InProcessServers) -> ServerFactory:
    """As tests/conftest.py's ``start_server``, on the session loop."""
    return inprocess_servers.transport


@pytest_asyncio.fixture(loop_scope="session")
async def echo_server(start_server: ServerFactory) -> WebSocketServer:
    return await start_server(EchoApp())


@pytest.fixture
def start_signaling(inprocess_servers: InProcessServers) -> ServerFactory:
    """As tests/conftest.py's ``start_signaling``, on the session loop (TLS with certfile/keyfile)."""
    return inprocess_servers.signaling


@pytest_asyncio.fixture(loop_scope="session")
async def signaling_server(start_signaling: ServerFactory) -> WebSocketServer:
    return await start_signaling()


@pytest.fixture
def server_url() -> Callable[..., str]:
    """``server_url(server, path="/", ws=False)``: its URL on 127.0.0.1, https/wss when it has TLS."""
    return inprocess.server_url
