"""Helpers for the aiortc end-to-end tests: `signaling peer` subprocesses, their JSON log events, bounded waits.

Also runnable, as the misbehaving client of the "drop mid-negotiation" test::

    python -m tests.e2e.peer_helpers drop-client --url ws://127.0.0.1:P/ws --room R

joins ROOM, sends a real aiortc offer (and its trickled candidates) to every peer already there, prints
``{"event": "offer_sent", ...}`` and then waits, never applying an answer, until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tests.helpers.server_process import ServerProcess, async_running_process
from tests.helpers.wait import wait_until

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

Event = dict[str, Any]
Predicate = Callable[[list[Event]], Any]

#: Every wait in these tests is bounded by this (seconds) unless a test says otherwise.
WAIT = 20.0
_POLL = 0.05
READY_LOG = r'"event": "joined"'


def peer_argv(url: str, room: str, *extra: str) -> list[str]:
    """``python -m signaling peer`` on loopback only, with JSON logs."""
    return [
        sys.executable,
        "-m",
        "signaling",
        "peer",
        "--url",
        url,
        "--room",
        room,
        "--host-address",
        "127.0.0.1",
        "--log-format",
        "json",
        *extra,
    ]


@contextlib.asynccontextmanager
async def running_peer(url: str, room: str, label: str, *extra: str) -> AsyncIterator[ServerProcess]:
    """A `signaling peer` subprocess that has joined; on exit SIGTERM, and it must then exit with status 0."""
    async with async_running_process(
        peer_argv(url, room, *extra),
        name=f"peer-{label}",
        ready_port=False,
        ready_log=READY_LOG,
        ok_returncodes=(0,),
        env_drop_prefixes=("SIGNALING_",),
    ) as proc:
        yield proc


@contextlib.asynccontextmanager
async def running_peers(url: str, room: str, labels: str, *extra: str) -> AsyncIterator[list[ServerProcess]]:
    """One `running_peer` per character of ``labels``, started at the same time (each takes ~1 s to import)."""
    async with contextlib.AsyncExitStack() as stack:
        started = await asyncio.gather(
            *(stack.enter_async_context(running_peer(url, room, label, *extra)) for label in labels),
            return_exceptions=True,  # let every start finish, so that each one that did is stopped again
        )
        for result in started:
            if isinstance(result, BaseException):
                raise result
        yield [p for p in started if isinstance(p, ServerProcess)]


def events(proc: ServerProcess) -> list[Event]:
    """The JSON log events the process wrote so far (other lines, e.g. the command line, are skipped)."""
    out: list[Event] = []
    for line in proc.log_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def of(evs: list[Event], event: str, **fields: Any) -> list[Event]:
    """The events named ``event`` whose fields include ``fields``."""
    return [e for e in evs if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]


async def wait_for(proc: ServerProcess, predicate: Predicate, what: str, seconds: float = WAIT) -> Any:
    """Poll ``proc``'s events until ``predicate(events)`` is truthy; return that value.

    Polled (tests/helpers/wait.py): the events are lines another process writes to its log file, which tells us
    nothing when one lands. Bounded by ``seconds``; the failure quotes the process's log, and a process that
    exits meanwhile fails at once.
    """
    found: list[Any] = []

    def seen() -> bool:
        result = predicate(events(proc))
        if result:
            found.append(result)
            return True
        if not proc.is_running:
            raise AssertionError(f"{proc.name} exited while waiting for {what}\n{proc.describe()}")
        return False

    await wait_until(
        seen, timeout=seconds, interval=_POLL, message=lambda: f"{proc.name}: no {what}\n{proc.describe()}"
    )
    return found[0]


async def wait_event(proc: ServerProcess, event: str, seconds: float = WAIT, **fields: Any) -> Event:
    """The first event named ``event`` with ``fields``, waiting for it if needed."""
    found = await wait_for(proc, lambda evs: of(evs, event, **fields), f"{event} {fields}", seconds)
    first: Event = found[0]
    return first


async def self_id(proc: ServerProcess) -> str:
    """The peer id the server gave this `signaling peer` (from its ``joined`` event)."""
    joined = await wait_event(proc, "joined")
    return str(joined["self_id"])


async def healthz(srv: ServerProcess) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(f"{srv.http_url}/healthz", timeout=5) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body

    return await asyncio.to_thread(get)


async def wait_healthz(srv: ServerProcess, expected: dict[str, Any], seconds: float = WAIT) -> dict[str, Any]:
    """Poll /healthz until it reports ``expected`` (a subset of its fields).

    Polled: the server's counters are state in another process; /healthz is the only view of them.
    """
    last: list[dict[str, Any]] = []

    async def reports_expected() -> bool:
        health = await healthz(srv)
        last.append(health)
        return all(health.get(k) == v for k, v in expected.items())

    await wait_until(
        reports_expected,
        timeout=seconds,
        interval=_POLL,
        message=lambda: f"/healthz is {last[-1] if last else '(no answer)'}, expected {expected}",
    )
    return last[-1]


async def until(condition: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
    """Poll an in-process ``condition`` until true, for at most ``seconds``.

    Only for state with no event to await, e.g. a peer Link's connection (signaling.clients.peer), whose
    RTCPeerConnection the link replaces (glare, restart) so that listening on one of them could miss the one that
    connects. For a connection the test holds itself, await its event with `connection_state`.
    """
    await wait_until(condition, timeout=seconds, interval=_POLL, message=f"no {what}")


async def connection_state(pc: RTCPeerConnection, state: str, what: str, seconds: float = WAIT) -> None:
    """Wait for ``pc``'s ``connectionstatechange`` event to report ``state`` (at most ``seconds``)."""
    reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check() -> None:
        if pc.connectionState == state and not reached.done():
            reached.set_result(None)

    pc.on("connectionstatechange", check)
    try:
        check()  # it may be there already
        async with asyncio.timeout(seconds):
            await reached
    except TimeoutError:
        raise AssertionError(f"no {what} within {seconds:.0f} s (state: {pc.connectionState})") from None
    finally:
        pc.remove_listener("connectionstatechange", check)


# ---------------------------------------------------------------------------------- the dropping client


async def _drop_client(url: str, room: str) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    from signaling.clients.peer.sdp import restrict_host_addresses, sdp_candidates
    from signaling.clients.signaling_client import SignalingClient

    restrict_host_addresses(["127.0.0.1"])
    pcs: list[RTCPeerConnection] = []
    # Not resumable: its drop must end its session at once (a resumable one would get the grace period).
    async with SignalingClient.connect(url, resume=False) as client:
        welcome = await client.join(room, name="dropper")
        targets = [p.peer for p in welcome.peers]
        for target in targets:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
            pc.createDataChannel("chat")
            await pc.setLocalDescription(await pc.createOffer())
            await client.send_offer(target, pc.localDescription.sdp)
            for cand in sdp_candidates(pc.localDescription.sdp):
                await client.send_candidate(target, cand)
            await client.send_candidate(target, None)
        print(json.dumps({"event": "offer_sent", "self_id": welcome.peer, "to": targets}), flush=True)
        await asyncio.Event().wait()  # until killed; the answers are never applied


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.peer_helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    drop = sub.add_parser("drop-client", help="join, offer to everyone, then hang until killed")
    drop.add_argument("--url", required=True)
    drop.add_argument("--room", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_drop_client(args.url, args.room))
    return 0


if __name__ == "__main__":
    sys.exit(main())
