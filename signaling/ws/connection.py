"""The sans-I/O WebSocket connection: bytes in, events out; send calls in, bytes out (RFC 6455).

Theory of operation
-------------------
A ``Connection`` owns no socket, no event loop and no clock. Its owner (the asyncio adapter, or a test):

1. feeds every received chunk to ``receive_data`` (and ``receive_eof`` at EOF), which returns events;
2. calls ``send_*`` / ``accept`` / ``fail`` to act;
3. after each of those, writes ``data_to_send()`` to the wire, and closes the transport once
   ``close_transport`` is true (the server always closes TCP first, 7.1.1);
4. starts its own timer when ``close_expected`` is true (a close handshake under way a silent peer could stall).

State
-----
``CONNECTING -> OPEN -> CLOSING -> CLOSED``, and straight to ``CLOSED`` from any of them. Every move to
``CLOSED`` goes through ``_set_closed``, the one place that decides the close code and reason an application
sees: the peer's close frame if one came, else ours when we failed the connection, else 1006 (7.1.5).
``close_transport`` and ``close_expected`` are derived from the state, the side, and whether the peer's close
frame or its EOF came.

One side-parametrised class serves both ends: servers require masked frames and never mask, clients the
reverse (5.1). Every peer violation is raised as a typed ``ProtocolError`` deep inside and mapped to a close
frame in exactly one place, ``_fail_for``. The connection is CLOSED at once, but its close frame is held back
until the next ``data_to_send()``: the owner may still answer the messages that came before the bad frame.

Frame parsing has two paths. The fast path handles a frame whose bytes are all buffered: one slice, one unmask,
one UTF-8 decode. The streaming path takes a data frame's payload as it trickles in, unmasking and validating each
piece, so invalid UTF-8 fails the connection as soon as it arrives (not when the frame ends) and a large frame is
never buffered twice. The message size limit is enforced from each frame's length header, before any of its
payload is kept.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from .assembly import MessageAssembly
from .events import (
    BadRequest,
    BinaryMessage,
    CloseReceived,
    Event,
    Failed,
    HandshakeComplete,
    HandshakeFailed,
    PingReceived,
    PongReceived,
    RequestReceived,
    TextMessage,
)
from .exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshake,
    InvalidState,
    InvalidUtf8,
    MessageTooBig,
    ProtocolError,
)
from .frames import (
    CloseCode,
    Opcode,
    decode_header,
    encode_frame,
    parse_close_payload,
    serialize_close_payload,
    truncate_close_reason,
    unmasked_text_frame,
)
from .handshake import ClientHandshake, build_accept_response, check_request, reject_response
from .http11 import DEFAULT_MAX_HEAD, HeadParser, Request, RequestReader, Response, parse_response_head
from .mask import LOW, NUMPY_THRESHOLD, REPEAT, apply_mask, unmask_utf8

__all__ = ["DEFAULT_MAX_FRAGMENTS", "DEFAULT_MAX_MESSAGE_SIZE", "Connection", "Side", "State"]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
#: Frames one message may come in. Each costs a parse and an unmask, so 65,000 one-byte fragments under the size
#: limit would cost ~100 ms of CPU for one message; real clients send one frame, or a few large ones.
DEFAULT_MAX_FRAGMENTS = 1024


class Side(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.IntEnum):
    CONNECTING = 0  # opening handshake under way (or a plain HTTP exchange on the server)
    OPEN = 1
    CLOSING = 2  # we sent a close frame and wait for the peer's
    CLOSED = 3  # close frames exchanged, connection failed, plain HTTP answered, or EOF


# Module aliases (as in websockets), for the hot paths: ``State.OPEN`` costs ~70 ns on CPython 3.11 (the enum
# metaclass defeats the attribute cache), a global ~10 ns, and the relay compares states several times a message.
CONNECTING = State.CONNECTING
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED


# Plain ints: the parse loop compares opcodes per frame, and an enum attribute lookup costs more than the compare.
_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_SIMPLE_TEXT = 0x80 | _TEXT  # the first header byte of a final text frame, no reserved bits
_SIMPLE_B0 = (_SIMPLE_TEXT, 0x80 | _BINARY)  # ... of a final text or binary frame


class Connection:
    """One WebSocket connection's protocol state, for either side."""

    __slots__ = (
        "_buf",
        "_client_handshake",
        "_eof",
        "_f_fin",
        "_f_mask",
        "_f_phase",
        "_f_remaining",
        "_head",
        "_held_close",
        "_message",
        "_out",
        "_reader",
        "close_code",
        "close_rcvd",
        "close_reason",
        "close_sent",
        "frames_streamed",
        "is_client",
        "max_fragments",
        "max_frames_per_read",
        "max_message_size",
        "peer_started_close",
        "request",
        "side",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        side: Side,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_head_size: int = DEFAULT_MAX_HEAD,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_frames_per_read: int = 1 << 62,
    ) -> None:
        self.side = side
        self.is_client = side is Side.CLIENT
        self.max_message_size = max_message_size if max_message_size is not None else 1 << 63
        self.max_fragments = max_fragments
        #: Control frames and fragments one ``receive_data`` call may parse: they make no message for a rate
        #: limit to see, and a 256 KiB read holds 40,000 of them (the owner sets this to its frame burst).
        self.max_frames_per_read = max_frames_per_read
        #: Frames that took the streaming path (fragments, frames split across reads): what a frame budget counts
        #: beyond the events, since they produce none.
        self.frames_streamed = 0
        self.state = CONNECTING
        #: The peer's close frame (code, reason), once received.
        self.close_rcvd: tuple[int, str] | None = None
        #: Our close frame (code, reason), once sent.
        self.close_sent: tuple[int, str] | None = None
        #: Whether the peer started the closing handshake (its close frame came while we were OPEN), which the code
        #: cannot say: a peer that echoes 1000 to our 1001 did not leave on purpose. False for failures and EOF.
        self.peer_started_close = False
        #: Once CLOSED: the close code and reason as an application sees them (see the module docstring).
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.subprotocol: str | None = None
        self.request: Request | None = None
        self._head: HeadParser | None = HeadParser(max_head_size)
        self._reader = RequestReader(self._head)  # a server's request: its head, then its body
        self._client_handshake: ClientHandshake | None = None
        self._out: list[bytes] = []
        #: Our close frame for a violation found while parsing; goes out last at the next data_to_send().
        self._held_close: bytes | None = None
        self._eof = False
        self._buf = b""  # unparsed bytes
        # The frame whose payload is being streamed (remaining > 0 while inside it).
        self._f_remaining = 0
        self._f_fin = True
        self._f_mask = b""
        self._f_phase = 0
        #: The message being put together across frames or streamed pieces (None: none).
        self._message: MessageAssembly | None = None

    # ------------------------------------------------------------------ state

    def _set_closed(self, code: int, reason: str) -> None:
        """The one transition to CLOSED; nothing more is parsed afterwards."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self.close_code = code
        self.close_reason = reason
        self._buf = b""

    @property
    def is_open(self) -> bool:
        return self.state is OPEN

    @property
    def message_in_progress(self) -> bool:
        """Whether part of a message is in: a fragmented message or a frame not complete (the owner bounds how
        long that may last; an unfinished message holds memory)."""
        return self._message is not None or self._f_remaining != 0

    @property
    def close_transport(self) -> bool:
        """Whether the owner should close TCP once ``data_to_send()`` is written.

        A server closes TCP as soon as it is CLOSED (7.1.1); a client waits for the server to do it after a
        completed close handshake, and closes itself only after a failure or at EOF.
        """
        if self.state is not CLOSED:
            return False
        return not self.is_client or self._eof or self.close_rcvd is None

    @property
    def close_expected(self) -> bool:
        """Whether the owner should arm a timer: a close is under way that a silent peer could stall."""
        if self.state is CLOSING:
            return True
        return self.state is CLOSED and not self._eof and not self.close_transport

    @property
    def close_exc(self) -> ConnectionClosed:
        """What an application raises once this connection is closed (1006 while it is not, yet unusable)."""
        code = self.close_code if self.close_code is not None else CloseCode.ABNORMAL
        sent = self.close_sent[0] if self.close_sent is not None else None
        return ConnectionClosed(code, self.close_reason or "", sent_code=sent, by_peer=self.peer_started_close)

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call.

        The close frame of a violation found by ``receive_data`` comes last: answers to the messages that
        preceded the bad frame still go out before it.
        """
        out = self._out
        if self._held_close is not None:
            out.append(self._held_close)
            self._held_close = None
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # ------------------------------------------------------------ handshakes

    def accept(
        self,
        request: Request,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """Server: validate the upgrade request and queue the 101. On a HandshakeError, the error response is
        queued, the transport is to be closed, and the error is raised again for the owner to log."""
        if self.is_client or self.state is not CONNECTING or self.request is None:
            raise InvalidState("accept() needs a received request on a server connection")
        try:
            accepted = check_request(request, subprotocols)
        except HandshakeError as exc:
            self.reject(exc)
            raise
        response = build_accept_response(accepted, extra_headers)
        self._out.append(response.serialize())
        self.subprotocol = accepted.subprotocol
        self.state = OPEN
        self._head = None
        return response

    def reject(self, error: HandshakeError) -> None:
        """Server: answer the request with an HTTP error and end the connection."""
        self.send_response(reject_response(error))

    def send_response(self, response: Response) -> None:
        """Server: answer a plain HTTP request (not an upgrade); the connection ends after it."""
        if self.is_client or self.state is not CONNECTING:
            raise InvalidState("send_response() is for a server connection before any upgrade")
        self._out.append(response.serialize())
        self._set_closed(CloseCode.ABNORMAL, "")

    def send_request(self, handshake: ClientHandshake) -> None:
        """Client: queue the opening handshake request."""
        if not self.is_client or self.state is not CONNECTING or self._client_handshake is not None:
            raise InvalidState("send_request() is for a new client connection")
        self._client_handshake = handshake
        self._out.append(handshake.request_bytes)

    def _receive_head(self, data: bytes, events: list[Event]) -> bytes | None:
        """Feeds the HTTP head parser; returns the bytes after the head once it is complete."""
        head_parser = self._head
        assert head_parser is not None
        if self.is_client:
            if self._client_handshake is None:
                raise InvalidState("send_request() must come before receive_data() on a client")
            try:
                try:
                    head = head_parser.feed(data)
                    if head is None:
                        return None
                    response = parse_response_head(head)
                except HandshakeError as exc:  # the head parsers speak a server's language: no HTTP response
                    raise InvalidHandshake(f"malformed response: {exc.reason}") from None
                subprotocol = self._client_handshake.check_response(response)
            except InvalidHandshake as exc:
                events.append(HandshakeFailed(exc))
                self._set_closed(CloseCode.ABNORMAL, "")
                return None
            self.subprotocol = subprotocol
            self.state = OPEN
            events.append(HandshakeComplete(response, subprotocol))
        else:
            if self.request is not None:
                # Not answered yet: a client waits for the 101 to send frames (4.1); kept for accept(), a head's worth.
                if len(self._buf) + len(data) <= head_parser.max_size:
                    self._buf = self._buf + data
                return None
            try:
                self.request = self._reader.feed(data)
            except HandshakeError as exc:
                events.append(BadRequest(exc))
                self.reject(exc)
                return None
            if self.request is None:
                return None
            events.append(RequestReceived(self.request))
            self._buf = self._reader.trailing
            return None
        self._head = None
        return head_parser.trailing

    # -------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse received bytes. ``b""`` re-parses what is buffered (a server calls it after accept())."""
        events: list[Event] = []
        if self.state is CLOSED:
            return events
        if self.state is CONNECTING:
            if self._head is not None:
                rest = self._receive_head(data, events)
                if rest is None or not self.is_open:
                    return events
                data = rest
            elif self.request is None:
                return events
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not data:
            return events
        try:
            pos = self._parse_frames(data, events)
        except ProtocolError as exc:
            self._fail_for(exc, events)
            return events
        if pos < len(data):
            self._buf = data[pos:]
        return events

    def receive_eof(self) -> list[Event]:
        """The peer closed its side of TCP. Without a close handshake that is an abnormal closure (1006)."""
        self._eof = True
        if self._held_close is not None:  # the peer is gone: the close frame of its violation has no reader
            self._held_close = None
            self.close_sent = None
        self._set_closed(CloseCode.ABNORMAL, "")
        return []

    def _parse_frames(self, data: bytes, events: list[Event]) -> int:
        """Parse as many frames as ``data`` holds; returns how far it got."""
        n = len(data)
        pos = 0
        is_client = self.is_client
        mask_bit = 0 if is_client else 0x80  # 5.1: what the peer's frames must carry
        max_size = self.max_message_size
        append = events.append
        from_bytes = int.from_bytes
        budget = self.max_frames_per_read  # control frames and streamed frames this call may still parse
        while True:
            if self._f_remaining:
                take = min(n - pos, self._f_remaining)
                if take == 0:
                    return pos
                self._stream_piece(memoryview(data)[pos : pos + take])
                pos += take
                if self._f_remaining:
                    return pos
                if self._f_fin:
                    append(self._finish_message())
                continue
            # Fast path: a whole final text/binary frame under 64 KiB, masked as due, outside a fragmented message,
            # header read inline (decode_header costs ~10% of a 250-byte parse). Anything else: the general path.
            fragmented = self._message is not None
            while True:
                if n - pos < 2:
                    return pos
                b0 = data[pos]
                length = data[pos + 1] ^ mask_bit
                if length > 126 or b0 not in _SIMPLE_B0:
                    break
                start = pos + 2
                if length == 126:
                    start += 2
                    if n < start:
                        return pos
                    length = (data[pos + 2] << 8) | data[pos + 3]
                if mask_bit:
                    start += 4
                end = start + length
                if end > n or length > max_size or fragmented:
                    break
                pos = end
                if b0 == _SIMPLE_TEXT:
                    try:
                        if not mask_bit:
                            text = data[start:end].decode("utf-8")
                        elif length < NUMPY_THRESHOLD:  # mask_bigint inlined: a call would cost as much as the XOR
                            key = from_bytes(data[start - 4 : start], "little") * REPEAT[(length + 3) >> 2]
                            raw = from_bytes(data[start:end], "little") ^ (key & LOW[length])
                            text = raw.to_bytes(length, "little").decode("utf-8")
                        else:
                            # Unmasked and decoded in one step, with no intermediate bytes object.
                            text = unmask_utf8(data, start, end, data[start - 4 : start])
                    except UnicodeDecodeError as exc:
                        raise InvalidUtf8(f"invalid UTF-8 at byte {exc.start} of a text message") from None
                    append(TextMessage(text))
                elif mask_bit:
                    append(BinaryMessage(apply_mask(memoryview(data)[start:end], data[start - 4 : start])))
                else:
                    append(BinaryMessage(data[start:end]))
            header = decode_header(data, pos)
            if header is None:
                return pos
            b0, length, mask_key, start = header
            # 5.1: a server must fail on an unmasked frame, a client on a masked one.
            if not mask_key and not is_client:
                raise ProtocolError("client frame is not masked")
            if mask_key and is_client:
                raise ProtocolError("server frame is masked")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            end = start + length
            if opcode & 0x8:
                if end > n:
                    return pos
                payload = data[start:end]
                if mask_key:
                    payload = apply_mask(payload, mask_key)
                pos = end
                budget -= 1
                if budget < 0:
                    raise ProtocolError(f"over {self.max_frames_per_read} control frames in one read", 1008)
                if self._control_frame(opcode, payload, events):
                    return n  # a close frame: whatever follows it is dropped unparsed
                continue
            message = self._message
            if opcode:
                if message is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                if length > max_size:
                    raise MessageTooBig(f"message of {length} bytes over the {max_size}-byte limit")
                message = self._message = MessageAssembly(text=opcode == _TEXT)
            elif message is None:
                raise ProtocolError("continuation frame without a message to continue")
            message.add_frame(length, max_size, self.max_fragments)
            self.frames_streamed += 1
            budget -= 1
            if budget < 0:
                raise ProtocolError(f"over {self.max_frames_per_read} fragments in one read", 1008)
            # Fragment, or a frame whose payload is not all here yet: stream it.
            self._f_remaining = length
            self._f_fin = bool(fin)
            self._f_mask = mask_key
            self._f_phase = 0
            pos = start
            if length == 0:
                if fin:
                    append(self._finish_message())
                continue

    def _stream_piece(self, piece: memoryview) -> None:
        """Unmask and keep one piece of the current data frame; text is validated as it arrives."""
        n = len(piece)
        mask_key = self._f_mask
        if mask_key:
            phase = self._f_phase
            if phase:
                mask_key = mask_key[phase:] + mask_key[:phase]
            chunk = apply_mask(piece, mask_key)
            self._f_phase = (phase + n) & 3
        else:
            chunk = bytes(piece)
        self._f_remaining -= n
        assert self._message is not None
        self._message.add(chunk)

    def _finish_message(self) -> TextMessage | BinaryMessage:
        message = self._message
        assert message is not None
        self._message = None
        return message.finish()

    def _control_frame(self, opcode: int, payload: bytes, events: list[Event]) -> bool:
        """Handle a ping, pong or close frame; True when it closed the connection."""
        if opcode == _PING:
            # 5.5.2: answer with a pong carrying the same payload, unless we already sent our close.
            if self.state is OPEN:
                self._out.append(encode_frame(_PONG, payload, mask=self.is_client))
            events.append(PingReceived(payload))
            return False
        if opcode == _PONG:
            events.append(PongReceived(payload))  # 5.5.3: unsolicited pongs need no answer
            return False
        # A close frame: decode_header refused every other control opcode.
        code, reason = parse_close_payload(payload)
        self.close_rcvd = (code, reason)
        if self.state is OPEN:
            self.peer_started_close = True
            # 5.5.1: answer with a close frame, echoing the peer's code (an empty body for an empty one).
            echo = None if code == CloseCode.NO_STATUS else code
            self._out.append(encode_frame(_CLOSE, serialize_close_payload(echo), mask=self.is_client))
            self.close_sent = (echo or CloseCode.NO_STATUS, "")
        self._set_closed(code, reason)
        events.append(CloseReceived(code, reason))
        return True

    def _fail_for(self, exc: ProtocolError, events: list[Event]) -> None:
        """The one place where a peer's violation becomes a close code (7.1.7)."""
        code, reason = exc.close_code, exc.reason
        if self.state is OPEN:
            self._held_close = self._close_frame(code, reason)
        self._set_closed(code, reason)
        events.append(Failed(code, reason))

    def _close_frame(self, code: int, reason: str) -> bytes:
        reason = truncate_close_reason(reason)
        self.close_sent = (code, reason)
        return encode_frame(_CLOSE, serialize_close_payload(code, reason), mask=self.is_client)

    # ---------------------------------------------------------------- sending

    def _check_sendable(self) -> None:
        # Until the next data_to_send() after a violation, the owner may still answer what came before it.
        if self.state is not OPEN and self._held_close is None:
            raise InvalidState(f"cannot send in state {self.state.name}")

    def send_text(self, text: str) -> None:
        if self.state is not OPEN:  # the relay's per-message call: _check_sendable only off the open path
            self._check_sendable()
        payload = text.encode("utf-8")
        self._out.append(encode_frame(_TEXT, payload, mask=True) if self.is_client else unmasked_text_frame(payload))

    def send_binary(self, data: bytes) -> None:
        self._check_sendable()
        self._out.append(encode_frame(_BINARY, data, mask=self.is_client))

    def send_frame(self, opcode: Opcode | int, payload: bytes, *, fin: bool = True) -> None:
        """A raw data frame, for fragmented messages; the caller keeps the fragmentation rules."""
        self._check_sendable()
        self._out.append(encode_frame(opcode, payload, fin=fin, mask=self.is_client))

    def send_ping(self, data: bytes = b"") -> None:
        self._check_sendable()
        if len(data) > 125:
            raise ValueError("ping payload over 125 bytes")
        self._out.append(encode_frame(_PING, data, mask=self.is_client))

    def send_pong(self, data: bytes = b"") -> None:
        self._check_sendable()
        if len(data) > 125:
            raise ValueError("pong payload over 125 bytes")
        self._out.append(encode_frame(_PONG, data, mask=self.is_client))

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (5.5.1). The owner should arm a timer while ``close_expected``."""
        if self.state is CONNECTING:
            raise InvalidState("cannot close before the handshake; close the transport instead")
        if self.state is not OPEN:
            return  # already closing or closed: a second close frame is never sent
        self._out.append(self._close_frame(code if code is not None else CloseCode.NO_STATUS, reason))
        self.state = CLOSING

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (7.1.7): send a close frame if we still may, then close TCP without waiting."""
        if self.state is OPEN:
            self._out.append(self._close_frame(code, reason))
        self._set_closed(code, reason)

    def __repr__(self) -> str:
        return f"<Connection {self.side.value} {self.state.name}>"
