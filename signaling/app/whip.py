"""WHIP and WHEP endpoints (``/whip/{room}``, ``/whep/{room}``): a broadcaster or a player of one HTTP request
becomes a peer of a room, answered by a peer there.

Each session is a synthetic peer: a :class:`Session` of the room layer like a WebSocket's, whose sink is the
session here rather than a connection. Its join, its offer and its trickled candidates are the client messages a
WebSocket peer would send, so auth, limits, metrics, the server API's removal and cluster mode apply unchanged;
the receiving peer's ``answer`` comes back through the deliveries and ends the held POST (the transport's
``Later``). What can be decided from plain values (which peer answers, a PATCH body, the Link headers, statuses)
is in signaling/interop/whip.py.

A session ends with DELETE, when its receiving peer leaves the room or tells it that the media ended (a
``message`` whose data is ``{"type": "ended"}``: only that peer sees the media stop), when the server API
removes it, or at shutdown; an unanswered POST (504, a client gone) leaves at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote

import structlog
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import ValidationError

from signaling.interop.whip import (
    SDP_TYPE,
    SDPFRAG_TYPE,
    choose_receiver,
    ice_credentials,
    ice_link_headers,
    if_match,
    media_type,
    offer_error,
    offer_mids,
    parse_sdpfrag,
    quoted,
    status_for,
)
from signaling.protocol.facts import ENDPOINT_ENDED, ENDPOINT_KINDS
from signaling.protocol.models import ErrorMessage, PeerLeft, RelayedAnswer, RelayedMessage, Welcome
from signaling.protocol.parse import parse_server_message
from signaling.rooms.limits import MessageRateLimit
from signaling.rooms.session import Session
from signaling.ws.aio.server import Later
from signaling.ws.http11 import Headers, Request, Response

from .routes import SECURITY_HEADERS

if TYPE_CHECKING:
    from .wiring import SignalingApp

__all__ = ["EndpointSession", "Endpoints"]

log = structlog.get_logger("signaling.whip")

#: Request headers a browser client sends; named one by one, since ``*`` does not cover Authorization.
ALLOW_HEADERS: Final = "Authorization, Content-Type, If-Match"
EXPOSE_HEADERS: Final = "Location, ETag, Link, Accept-Patch"
_COUNTED: Final = frozenset({"POST", "PATCH", "DELETE", "OPTIONS"})
_METHODS: Final = {2: "POST, OPTIONS", 3: "PATCH, DELETE, OPTIONS"}


def _reply(status: int, text: str = "", extra: tuple[tuple[str, str], ...] = ()) -> Response:
    headers = Headers([("Cache-Control", "no-store"), *SECURITY_HEADERS, *extra])
    if not text:
        return Response(status, headers)
    headers.add("Content-Type", "text/plain; charset=utf-8")
    return Response(status, headers, (text + "\n").encode("utf-8"))


class EndpointSession:
    """One WHIP or WHEP session: the synthetic peer's sink (the room layer's ``PeerSink``) and its Session."""

    def __init__(self, endpoints: Endpoints, kind: str, room: str, client: str, offer: str) -> None:
        app = endpoints.app
        self.endpoints = endpoints
        self.kind = kind
        self.room = room
        self.client = client
        self.sid = secrets.token_urlsafe(24)  # the Location: a capability, unlike the peer id the room sees
        self.etag = quoted(secrets.token_urlsafe(12))
        self.mids = offer_mids(offer)
        self.ice = ice_credentials(offer)
        self.log = log.bind(kind=kind, room=room, client=client)
        settings = app.settings
        self.limit = MessageRateLimit(
            settings.rate_limit,
            settings.rate_burst,
            settings.rate_limit_bytes,
            settings.rate_burst_bytes,
            app.clock(),
            abuse_strikes=settings.abuse_strikes,
        )
        authorize = app.authorizer.for_client(client) if app.authorizer is not None else None
        self.session = Session(
            app.backends,
            self,
            ice_servers=app.ice_servers,
            logger=self.log,
            authorize=authorize,
            clock=app.wall_clock,
            counters=app.counters,
            address=client,
        )
        self.welcome: Welcome | None = None
        self.error: ErrorMessage | None = None
        self.target: str | None = None
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.established = False
        self.ended = False

    @property
    def location(self) -> str:
        return f"/{self.kind}/{self.room}/{self.sid}"

    # ------------------------------------------------------------------ PeerSink

    def deliver(self, text: str) -> None:
        try:
            msg = parse_server_message(text)
        except ValidationError:
            self.log.warning("unreadable_server_text", text=text[:200])
            return
        if isinstance(msg, Welcome):
            self.welcome = msg
        elif isinstance(msg, ErrorMessage):
            self.log.info("signaling_error", code=str(msg.code), message=msg.message)
            if self.target is None:
                self.error = msg
            else:
                self._fail(404 if msg.code == "unknown-peer" else status_for(msg.code), msg.message)
        elif self.target is None:
            return
        elif isinstance(msg, RelayedAnswer) and msg.from_ == self.target:
            if not msg.sdp.startswith("v=0"):  # never a 201 without an answer
                self._fail(502, "the receiving peer's answer is not an SDP answer")
            elif not self.answer.done():
                self.answer.set_result(msg.sdp)
        elif isinstance(msg, PeerLeft) and msg.peer == self.target:
            self._fail(502, "the receiving peer left the room before answering")
            self._end_later("receiver_left")
        elif isinstance(msg, RelayedMessage) and msg.from_ == self.target:
            data = msg.data
            if isinstance(data, dict) and data.get("type") == ENDPOINT_ENDED:
                self._end_later("receiver_ended")
        # Its candidates and offers have nowhere to go: WHIP and WHEP answer once, with every candidate.

    def taken_over(self) -> None:
        """Never called: the session is not resumable."""

    def removed(self) -> None:
        """The server API removed the synthetic peer, which has left its room already."""
        self.session.moved()
        self._fail(410, "the session was removed")
        self._forget()

    # ------------------------------------------------------------------ life

    def _fail(self, status: int, text: str) -> None:
        if self.target is not None and not self.answer.done():
            self.answer.set_exception(_Refusal(status, text))

    def _end_later(self, reason: str) -> None:
        if not self.ended:
            self.endpoints.app.later(self.end(reason))

    def _forget(self) -> bool:
        """Mark the session over (once): it leaves the registry and its address's count."""
        if self.ended:
            return False
        self.ended = True
        self.endpoints.sessions.pop(self.sid, None)
        self.endpoints.app.limits.closed(self.client)
        return True

    async def end(self, reason: str) -> None:
        """The synthetic peer leaves its room (the others get ``peer-left``); idempotent."""
        if self._forget():
            self.log.info("session_ended", reason=reason)
            await self.session.left()

    def relay(self, message: dict[str, Any]) -> None:
        """Send one client message of the synthetic peer (its relays never wait)."""
        step = self.session.handle_text(json.dumps(message, separators=(",", ":")))
        if step is not None:  # only a join or a leave is a step, and neither comes here
            step.close()


class _Refusal(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class Endpoints:
    """Routes ``/whip/...`` and ``/whep/...`` for one app; keeps its sessions by their Location."""

    def __init__(self, app: SignalingApp) -> None:
        self.app = app
        self.sessions: dict[str, EndpointSession] = {}
        #: Answers given, by (kind, method, status): /metrics.
        self.responses: Counter[tuple[str, str, int]] = Counter()
        app.metrics.registry.register(_Collector(self))

    # ------------------------------------------------------------------ routing

    def handle(self, request: Request, peer: tuple[str, int] | None) -> Response | Later:
        kind = request.path.split("/", 2)[1]
        method = request.method
        origin = request.headers.get("Origin")
        if not self.app.origins.allows(origin, request.headers.get("Host")):
            self.app.rejections["origin"] += 1
            return self._done(kind, method, _reply(403, "this page's origin may not use this endpoint"), None)
        try:
            parts = [unquote(p, errors="strict") for p in request.path.split("/")[2:]]
        except UnicodeDecodeError:
            parts = []
        if len(parts) not in (1, 2) or not all(parts):
            return self._done(kind, method, _reply(404, "not found"), origin)
        if method == "OPTIONS":
            return self._done(kind, method, self._preflight(len(parts) + 1), origin)
        client = self.app.addresses.resolve(peer[0] if peer else None, request.headers)
        if len(parts) == 1:
            answer = self._post(kind, parts[0], request, client) if method == "POST" else None
        else:
            session = self.sessions.get(parts[1])
            if session is None or session.kind != kind or session.room != parts[0]:
                answer = _reply(404, f"no such {kind.upper()} session (ended, or never was)")
            elif method == "PATCH":
                answer = self._patch(session, request)
            elif method == "DELETE":
                answer = Later(self._delete(session))
            else:
                answer = None
        if answer is None:
            answer = _reply(405, "method not allowed", (("Allow", _METHODS[len(parts) + 1]),))
        return self._done(kind, method, answer, origin)

    def _done(self, kind: str, method: str, answer: Response | Later, origin: str | None) -> Response | Later:
        if isinstance(answer, Later):
            return Later(self._finish(kind, method, answer.response, origin))
        # Labels stay bounded whatever clients send: other methods count as one.
        self.responses[kind, method if method in _COUNTED else "other", answer.status] += 1
        if origin is not None:
            answer.headers.add("Access-Control-Allow-Origin", origin)
            answer.headers.add("Access-Control-Expose-Headers", EXPOSE_HEADERS)
            answer.headers.add("Vary", "Origin")
        return answer

    async def _finish(self, kind: str, method: str, pending: Awaitable[Response], origin: str | None) -> Response:
        response = await pending
        self._done(kind, method, response, origin)
        return response

    def _preflight(self, depth: int) -> Response:
        return _reply(
            204,
            extra=(
                ("Allow", _METHODS[depth]),
                ("Access-Control-Allow-Methods", _METHODS[depth]),
                ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", "86400"),
                ("Accept-Post" if depth == 2 else "Accept-Patch", SDP_TYPE if depth == 2 else SDPFRAG_TYPE),
            ),
        )

    # ------------------------------------------------------------------ POST: a new session

    def _post(self, kind: str, room: str, request: Request, client: str) -> Response | Later:
        app = self.app
        if not app.accepting:
            app.rejections["unavailable"] += 1
            return _reply(503, "this server is not taking new sessions now: try another", (("Retry-After", "1"),))
        if media_type(request.headers.get("Content-Type")) != SDP_TYPE:
            return _reply(415, f"the offer must be sent as {SDP_TYPE}", (("Accept-Post", SDP_TYPE),))
        try:
            offer = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return _reply(400, "the SDP offer is not UTF-8")
        problem = offer_error(offer)
        if problem is not None:
            return _reply(400, problem)
        wanted = parse_qs(request.query).get("peer", [None])[0]
        refusal = app.limits.check(client, app.clock())
        if refusal is not None:
            app.rejections[refusal.reason] += 1
            return _reply(429, refusal.text, (("Retry-After", str(max(1, round(refusal.retry_after)))),))
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        return Later(self._open(EndpointSession(self, kind, room, client, offer), offer, bearer, wanted))

    async def _open(self, session: EndpointSession, offer: str, token: str | None, wanted: str | None) -> Response:
        self.app.limits.opened(session.client)  # counted as one of its address's connections while it lasts
        try:
            return await self._negotiate(session, offer, token, wanted)
        finally:
            if not session.established:
                self.app.later(session.end("not_established"))

    async def _negotiate(self, session: EndpointSession, offer: str, token: str | None, wanted: str | None) -> Response:
        join: dict[str, Any] = {"type": "join", "room": session.room, "meta": {"kind": session.kind}}
        if token is not None:
            join["token"] = token
        step = session.session.handle_text(json.dumps(join))
        if step is not None:
            await step
        welcome = session.welcome
        if welcome is None:
            error = session.error
            status = status_for(error.code) if error is not None else 500
            text = error.message if error is not None else "the room refused the session"
            extra = (("WWW-Authenticate", "Bearer"),) if status == 401 else ()
            return _reply(status, text, extra)
        target = choose_receiver(welcome.peers, wanted)
        if target is None:
            text = (
                f"no peer {wanted!r} in room {session.room!r}"
                if wanted is not None
                else f"no peer in room {session.room!r} to answer: someone must be in the call first"
            )
            return _reply(404, text)
        session.target = target
        session.relay({"type": "offer", "to": target, "sdp": offer})
        timeout = self.app.settings.whip_answer_timeout
        try:
            async with asyncio.timeout(timeout):
                answer = await session.answer
        except TimeoutError:
            session.log.info("answer_timeout", peer=target, seconds=timeout)
            return _reply(504, f"the receiving peer did not answer within {timeout:g} s")
        except _Refusal as exc:
            return _reply(exc.status, exc.text)
        if session.ended:
            return _reply(410, "the session ended before it was established")
        session.established = True
        self.sessions[session.sid] = session
        session.log.info("session_open", peer=target, self_id=welcome.peer)
        headers = [
            ("Content-Type", SDP_TYPE),
            ("Location", session.location),
            ("ETag", session.etag),
            ("Accept-Patch", SDPFRAG_TYPE),
            *(("Link", link) for link in ice_link_headers(welcome.iceServers)),
        ]
        response = _reply(201, extra=tuple(headers))
        response.body = answer.encode("utf-8")
        return response

    # ------------------------------------------------------------------ PATCH and DELETE

    def _patch(self, session: EndpointSession, request: Request) -> Response:
        if media_type(request.headers.get("Content-Type")) != SDPFRAG_TYPE:
            return _reply(415, f"send candidates as {SDPFRAG_TYPE}", (("Accept-Patch", SDPFRAG_TYPE),))
        if not if_match(request.headers.get("If-Match"), session.etag):
            return _reply(412, "If-Match does not name this session's ICE session (its ETag)")
        # Charged before it is parsed: the PATCH as one message of its size, each further candidate as one more
        # message to the receiving peer, as a WebSocket peer's candidates would be.
        if not session.limit.admit(len(request.body), self.app.clock()):
            return self._too_fast()
        try:
            fragment = parse_sdpfrag(request.body.decode("utf-8"), session.mids)
        except (UnicodeDecodeError, ValueError) as exc:
            return _reply(400, f"not a trickle-ice-sdpfrag: {exc}")
        if (fragment.ufrag, fragment.pwd) != (None, None) and (fragment.ufrag, fragment.pwd) != session.ice:
            # RFC 9725 4.3.2: the receiving peer cannot renegotiate ICE alone over this endpoint.
            return _reply(422, "ICE restarts are not supported here: DELETE the session and POST a new offer")
        target = session.target
        assert target is not None
        messages: list[dict[str, Any]] = [
            {"type": "candidate", "to": target, "candidate": candidate} for candidate in fragment.candidates
        ]
        if fragment.end:
            messages.append({"type": "candidate", "to": target, "candidate": None})
        for index, message in enumerate(messages):
            if index and not session.limit.admit(0, self.app.clock()):
                return self._too_fast()
            session.relay(message)
        return _reply(204, extra=(("ETag", session.etag),))

    def _too_fast(self) -> Response:
        self.app.rate_limited += 1
        return _reply(429, "too many candidates or PATCH requests for this session: slow down", (("Retry-After", "1"),))

    async def _delete(self, session: EndpointSession) -> Response:
        await session.end("deleted")
        return _reply(200)

    async def close(self) -> None:
        """End every session (shutdown): the others see them leave."""
        await asyncio.gather(*(s.end("shutdown") for s in list(self.sessions.values())), return_exceptions=True)


class _Collector:
    """The endpoints' figures for /metrics, read at scrape time."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def collect(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "signaling_whip_sessions", "Established WHIP and WHEP sessions on this node.", labels=["kind"]
        )
        counts = Counter(s.kind for s in self.endpoints.sessions.values())
        for kind in ENDPOINT_KINDS:
            sessions.add_metric([kind], counts[kind])
        yield sessions
        responses = CounterMetricFamily(
            "signaling_whip_responses",
            "WHIP and WHEP answers, by endpoint, method and status.",
            labels=["kind", "method", "status"],
        )
        for (kind, method, status), count in sorted(self.endpoints.responses.items()):
            responses.add_metric([kind, method, str(status)], count)
        yield responses
