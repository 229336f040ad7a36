"""Start `signaling` (or any) subprocesses in tests, wait until they are ready, stop them, check the result.

Typical use::

    with running_server("--echo") as srv:          # python -m signaling serve --host 127.0.0.1 --port <free>
        ...connect to srv.url...
    # here the server got SIGTERM, exited, and its exit status was checked (0 or -SIGTERM)

    async with async_running_server("--echo") as srv:   # same, without blocking the event loop
        ...

    with running_process([sys.executable, "-m", "signaling", "peer", "--url", url], ready_port=False,
                         must_stay_up=False, name="peer") as peer:
        assert peer.wait(30) == 0

Command arguments may contain the placeholders ``{host}`` and ``{port}``; they are replaced (by plain string
replacement, so other braces are left alone) with the host and the chosen port. When no port is given, a free
one is picked, and if the process then dies with "address already in use" (another process took the port
between the pick and the bind) it is restarted on a new port, up to 3 attempts.

stdout and stderr go to one log file (``test-artifacts/logs/`` by default, so CI can keep it); failures quote
its tail, and ``ServerProcess.log_text()`` returns all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

from tests.helpers.ports import free_port, listener_owned_by
from tests.helpers.wait import wait_until, wait_until_sync

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
LOG_DIR = ARTIFACTS_DIR / "logs"

DEFAULT_READY_TIMEOUT = 15.0
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_OK_RETURNCODES: tuple[int, ...] = (0, -signal.SIGTERM)
PORT_ATTEMPTS = 3
SIGNALING_ENV_PREFIX = "SIGNALING_"

_POLL_INTERVAL = 0.02
_CONNECT_TIMEOUT = 0.5
_LOG_TAIL_CHARS = 8000
_ADDR_IN_USE = re.compile(r"address already in use|errno 98\b|EADDRINUSE", re.IGNORECASE)
_log_counter = itertools.count(1)

Env = Mapping[str, str | None]
ReadyLog = str | re.Pattern[str] | None


class ProcessOptions(TypedDict, total=False):
    """The keyword options of `running_process` and its variants (defaults: see `_Run`)."""

    name: str | None
    host: str
    port: int | None
    env: Env | None
    env_drop_prefixes: Sequence[str]
    cwd: Path | str | None
    log_dir: Path | str | None
    ready_port: bool
    ready_log: ReadyLog
    ready_timeout: float
    stop_timeout: float
    ok_returncodes: Sequence[int]
    must_stay_up: bool
    check: bool


class ServerProcessError(RuntimeError):
    """A test subprocess failed to start, crashed, or did not shut down cleanly (message includes its log)."""


def describe_returncode(returncode: int | None) -> str:
    """Human-readable exit status: 'exit code 1', 'signal SIGKILL (-9)', 'still running'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal {name} ({returncode})"
    return f"exit code {returncode}"


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _build_env(env: Env | None, drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """os.environ minus variables starting with `drop_prefixes`, plus `env` (a None value removes a key)."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    merged["PYTHONUNBUFFERED"] = "1"  # so the log is complete even when the process is killed
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def _exit_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``proc`` to exit, without blocking the event loop; True if it did (reaped).

    The exit is an event: a pidfd (Linux 5.3+) becomes readable when the process ends. Only where pidfds are
    missing is ``proc.poll()`` polled instead.
    """
    if proc.poll() is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)  # still unreaped (only we reap it), so the pid is still ours
    except (AttributeError, OSError):
        return await _Holds(lambda: proc.poll() is not None, seconds).wait_async()
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        async with asyncio.timeout(seconds):
            await exited
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    proc.wait()  # it has exited: this only reaps it
    return True


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _Exited:
    """A step: wait up to ``seconds`` for ``proc`` to exit. The answer: whether it did (it is reaped then)."""

    proc: subprocess.Popen[bytes]
    seconds: float

    def wait(self) -> bool:
        try:
            self.proc.wait(self.seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    async def wait_async(self) -> bool:
        return await _exit_within(self.proc, self.seconds)


@dataclasses.dataclass(frozen=True)
class _Holds:
    """A step: poll ``predicate`` for up to ``seconds``. The answer: whether it came true (its errors propagate).

    Polled (tests/helpers/wait.py): another process's listening socket and log file announce nothing to us.
    """

    predicate: Callable[[], bool]
    seconds: float

    def wait(self) -> bool:
        try:
            wait_until_sync(self.predicate, timeout=self.seconds, interval=_POLL_INTERVAL)
        except AssertionError:
            return False
        return True

    async def wait_async(self) -> bool:
        try:
            await wait_until(self.predicate, timeout=self.seconds, interval=_POLL_INTERVAL)
        except AssertionError:
            return False
        return True


#: Process handling written once for both worlds: a generator that yields each wait it needs (an `_Exited` or a
#: `_Holds`), is sent the answer, and returns its result. `_drive` runs it blocking, `_drive_async` on the loop.
Steps = Generator[_Exited | _Holds, bool, T]


async def _run(steps: Steps[T], *, blocking: bool) -> T:
    """Run ``steps``, each wait blocking the thread or awaited on the event loop. An exception raised while
    waiting (a cancellation, say) is thrown into ``steps`` where they waited, so their cleanup runs."""
    try:
        step = next(steps)
        while True:
            try:
                answer = step.wait() if blocking else await step.wait_async()
            except BaseException as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


def _drive(steps: Steps[T]) -> T:
    """Run ``steps`` blocking: the coroutine never awaits, so its first ``send`` runs it to the end."""
    run = _run(steps, blocking=True)
    try:
        run.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    run.close()
    raise AssertionError("a blocking run of steps awaited something")


async def _drive_async(steps: Steps[T]) -> T:
    return await _run(steps, blocking=False)


class ServerProcess:
    """One started subprocess with its log file. Created and driven by the `running_*` context managers."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        host: str,
        port: int,
        log_path: Path,
        env: Env | None = None,
        env_drop_prefixes: Sequence[str] = (),
        cwd: Path | str | None = REPO_ROOT,
        ok_returncodes: Sequence[int] = DEFAULT_OK_RETURNCODES,
        must_stay_up: bool = True,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.argv: list[str] = [a.replace("{host}", host).replace("{port}", str(port)) for a in argv]
        self.log_path = log_path
        self.env = _build_env(env, env_drop_prefixes)
        self.cwd = cwd
        self.ok_returncodes = tuple(ok_returncodes)
        self.must_stay_up = must_stay_up
        self._proc: subprocess.Popen[bytes] | None = None
        self.exited_on_its_own = False
        self.killed = False
        self.stopped = False

    # -- properties --

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ServerProcessError(f"{self.name} was never started")
        return self._proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """Base WebSocket URL, ``ws://host:port`` (no trailing slash)."""
        return f"ws://{_format_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{_format_host(self.host)}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- log --

    def log_text(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        text = self.log_text()
        return text if len(text) <= chars else "[...]\n" + text[-chars:]

    def describe(self) -> str:
        """Command, status and log tail, for failure messages."""
        status = describe_returncode(self._proc.poll() if self._proc is not None else None)
        return (
            f"{self.name}: {' '.join(self.argv)}\n"
            f"status: {status}; log: {self.log_path}\n"
            f"----- {self.name} log (tail) -----\n{self.log_tail()}\n----- end of {self.name} log -----"
        )

    # -- lifecycle --

    def start(self) -> None:
        if self._proc is not None:
            raise ServerProcessError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            # Own session/process group: a kill on timeout also reaches any children, and a terminal Ctrl-C
            # does not hit the server before the test's own cleanup does.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def _port_accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=_CONNECT_TIMEOUT):
                pass
        except OSError:
            return False
        # Something listens; make sure it is our process and not one that took the port first (bind race).
        return listener_owned_by(self.port, self.proc.pid) is not False

    def _ready_once(self, ready_port: bool, ready_log: re.Pattern[str] | None) -> bool:
        """One readiness probe. Raises if the process has already exited."""
        returncode = self.proc.poll()
        if returncode is not None:
            status = describe_returncode(returncode)
            message = f"{self.name} exited with {status} before it was ready"
            raise ServerProcessError(f"{message}\n{self.describe()}")
        if ready_log is not None and not ready_log.search(self.log_text()):
            return False
        return not ready_port or self._port_accepts()

    def _not_ready(self, seconds: float, ready_port: bool, ready_log: re.Pattern[str] | None) -> Exception:
        waited_for = []
        if ready_port:
            waited_for.append(f"a TCP connection to {self.host}:{self.port}")
        if ready_log is not None:
            waited_for.append(f"a log line matching {ready_log.pattern!r}")
        what = " and ".join(waited_for)
        message = f"{self.name} not ready after {seconds:.1f} s (waited for {what})"
        if ready_port and listener_owned_by(self.port, self.proc.pid) is False:
            message += f"; port {self.port} is held by another process"
        return ServerProcessError(f"{message}\n{self.describe()}")

    def _wait_ready_steps(self, seconds: float, ready_port: bool, ready_log: ReadyLog) -> Steps[None]:
        pattern = re.compile(ready_log) if isinstance(ready_log, str) else ready_log
        if not (yield _Holds(lambda: self._ready_once(ready_port, pattern), seconds)):
            raise self._not_ready(seconds, ready_port, pattern)

    def wait_ready(
        self, seconds: float = DEFAULT_READY_TIMEOUT, *, ready_port: bool = True, ready_log: ReadyLog = None
    ) -> None:
        """Poll until the port accepts connections (and/or the log matches); raise with the log if not."""
        _drive(self._wait_ready_steps(seconds, ready_port, ready_log))

    async def wait_ready_async(
        self, seconds: float = DEFAULT_READY_TIMEOUT, *, ready_port: bool = True, ready_log: ReadyLog = None
    ) -> None:
        """`wait_ready` on the event loop (the connect probe blocks, but on loopback it returns at once)."""
        await _drive_async(self._wait_ready_steps(seconds, ready_port, ready_log))

    def _wait_steps(self, seconds: float) -> Steps[int]:
        if not (yield _Exited(self.proc, seconds)):
            raise ServerProcessError(f"{self.name} did not finish within {seconds:.1f} s\n{self.describe()}")
        return self.proc.returncode

    def wait(self, seconds: float) -> int:
        """Wait for a process that is expected to finish by itself; raise (with the log) on timeout."""
        return _drive(self._wait_steps(seconds))

    async def wait_async(self, seconds: float) -> int:
        return await _drive_async(self._wait_steps(seconds))

    def _begin_stop(self) -> bool:
        """Send SIGTERM if still running. Returns False when there is nothing to wait for."""
        if self._proc is None or self.stopped:
            return False
        self.stopped = True
        if self._proc.poll() is not None:
            self.exited_on_its_own = True
            return False
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)
        return True

    def _kill(self) -> None:
        # The process is still unreaped here, so its pid (== its process group id) cannot have been reused.
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def _stop_steps(self, seconds: float) -> Steps[int | None]:
        if self._begin_stop() and not (yield _Exited(self.proc, seconds)):
            self._kill()
            self.proc.wait()  # SIGKILL: immediate
        return self._proc.poll() if self._proc is not None else None

    def stop(self, seconds: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `seconds`, then SIGKILL (process group). Idempotent; returns exit status."""
        return _drive(self._stop_steps(seconds))

    async def stop_async(self, seconds: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        return await _drive_async(self._stop_steps(seconds))

    def problems(self) -> list[str]:
        """What went wrong with this (stopped) process, if anything."""
        problems = []
        returncode = self._proc.poll() if self._proc is not None else None
        if self.exited_on_its_own and self.must_stay_up:
            status = describe_returncode(returncode)
            problems.append(f"exited by itself ({status}) before it was asked to stop")
        if self.killed:
            problems.append(f"did not exit after SIGTERM within {DEFAULT_STOP_TIMEOUT:.0f} s and was killed")
        if returncode is not None and returncode not in self.ok_returncodes:
            allowed = ", ".join(describe_returncode(c) for c in self.ok_returncodes)
            problems.append(f"ended with {describe_returncode(returncode)} (allowed: {allowed})")
        return problems

    def check(self) -> None:
        """Raise ServerProcessError (with the log) if the process crashed or did not shut down cleanly."""
        problems = self.problems()
        if problems:
            raise ServerProcessError(f"{self.name} " + "; ".join(problems) + "\n" + self.describe())


def _log_path(log_dir: Path | str | None, name: str, port: int) -> Path:
    directory = Path(log_dir) if log_dir is not None else LOG_DIR
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return directory / f"{safe}-{os.getpid()}-{next(_log_counter)}-p{port}.log"


def _is_bind_race(server: ServerProcess, port_was_given: bool) -> bool:
    return not port_was_given and not server.is_running and bool(_ADDR_IN_USE.search(server.log_text()))


def _annotate(exc: BaseException, server: ServerProcess) -> None:
    exc.add_note(f"(while {server.name} was running)\n{server.describe()}")


@dataclasses.dataclass(frozen=True)
class _Run:
    """One `running_*` block: the keyword options with their defaults, its start and its end, as steps."""

    argv: Sequence[str]
    name: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    env: Env | None = None
    env_drop_prefixes: Sequence[str] = ()
    cwd: Path | str | None = REPO_ROOT
    log_dir: Path | str | None = None
    ready_port: bool = True
    ready_log: ReadyLog = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    ok_returncodes: Sequence[int] = DEFAULT_OK_RETURNCODES
    must_stay_up: bool = True
    check: bool = True

    def _make(self) -> ServerProcess:
        name = self.name or Path(self.argv[0]).name
        port = self.port if self.port is not None else free_port(self.host)
        return ServerProcess(
            self.argv,
            name=name,
            host=self.host,
            port=port,
            log_path=_log_path(self.log_dir, name, port),
            env=self.env,
            env_drop_prefixes=self.env_drop_prefixes,
            cwd=self.cwd,
            ok_returncodes=self.ok_returncodes,
            must_stay_up=self.must_stay_up,
        )

    def start(self) -> Steps[ServerProcess]:
        """Start the process and wait until it is ready; after a lost bind race, again on another free port."""
        attempt = 1
        while True:
            server = self._make()
            server.start()
            try:
                if self.ready_port or self.ready_log is not None:
                    yield from server._wait_ready_steps(self.ready_timeout, self.ready_port, self.ready_log)
            except ServerProcessError:
                yield from server._stop_steps(self.stop_timeout)
                if attempt < PORT_ATTEMPTS and _is_bind_race(server, self.port is not None):
                    attempt += 1
                    continue
                raise
            except BaseException:
                server.stop(self.stop_timeout)  # also on cancellation: must not wait on the event loop here
                raise
            return server

    def finish(self, server: ServerProcess, exc: BaseException | None) -> Steps[None]:
        """Stop the process as the block ends (``exc``: how it ended, if by an exception); after a clean block,
        check how the process ended. A cancelled or interrupted block stops it without waiting on the loop."""
        if exc is None or isinstance(exc, Exception):
            yield from server._stop_steps(self.stop_timeout)
        else:
            server.stop(self.stop_timeout)
        if exc is not None:
            _annotate(exc, server)
        elif self.check:
            server.check()


@contextlib.contextmanager
def running_process(argv: Sequence[str], **options: Unpack[ProcessOptions]) -> Iterator[ServerProcess]:
    """Run `argv` (with {host}/{port} filled in) for the duration of the block; see the module docstring.

    ready_port: wait until host:port accepts TCP connections; ready_log: also/instead wait for a log regex.
    env: extra variables (None removes one); env_drop_prefixes: inherited variables to leave out.
    must_stay_up: the process exiting by itself before the block ends is a failure.
    check: on a clean exit from the block, raise if the process crashed / was killed / exited with a bad code.
    Defaults: see `_Run`.
    """
    run = _Run(argv, **options)
    server = _drive(run.start())
    try:
        yield server
    except BaseException as exc:
        _drive(run.finish(server, exc))
        raise
    _drive(run.finish(server, None))


@contextlib.asynccontextmanager
async def async_running_process(argv: Sequence[str], **options: Unpack[ProcessOptions]) -> AsyncIterator[ServerProcess]:
    """`running_process` for async tests: readiness polling and stopping do not block the event loop."""
    run = _Run(argv, **options)
    server = await _drive_async(run.start())
    try:
        yield server
    except BaseException as exc:
        await _drive_async(run.finish(server, exc))
        raise
    await _drive_async(run.finish(server, None))


def signaling_argv(subcommand: str, *args: str) -> list[str]:
    """``python -m signaling <subcommand> --host {host} --port {port} *args`` (placeholders filled later)."""
    return [sys.executable, "-m", "signaling", subcommand, "--host", "{host}", "--port", "{port}", *args]


def _serve_options(options: ProcessOptions) -> ProcessOptions:
    options.setdefault("name", "signaling-serve")
    options.setdefault("env_drop_prefixes", (SIGNALING_ENV_PREFIX,))
    return options


def running_server(*args: str, **options: Unpack[ProcessOptions]) -> contextlib.AbstractContextManager[ServerProcess]:
    """Run ``python -m signaling serve --host H --port P *args`` during the block; yields a ServerProcess.

    SIGNALING_* variables of the test runner's environment are not inherited (so a developer's shell cannot
    change what a test sees); pass settings as arguments or through `env`.
    """
    return running_process(signaling_argv("serve", *args), **_serve_options(options))


def async_running_server(
    *args: str, **options: Unpack[ProcessOptions]
) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """Async variant of `running_server`."""
    return async_running_process(signaling_argv("serve", *args), **_serve_options(options))
