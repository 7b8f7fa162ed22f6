"""``WebSocketConnection``: one client connection as an ``asyncio.Protocol`` around the library's
sans-I/O ``ClientProtocol`` (see the package docstring)."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping

from websockets.client import ClientProtocol
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from websockets.frames import BINARY, CONT, OK_CLOSE_CODES, PONG, TEXT, CloseCode, apply_mask
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import CLOSED, CONNECTING, OPEN, State

from .framing import FIN_BINARY, FIN_TEXT, MASK_POOL_BYTES, DirectFraming, frame_header
from .keepalive import Keepalive

Message = str | bytes


class WebSocketConnection(DirectFraming, Keepalive, asyncio.Protocol):
    """One client connection. Made by :func:`connect`.

    Sending: :meth:`write` (synchronous, for hot paths) or :meth:`send` (waits while the socket
    is backed up). Receiving: ``async for message in connection`` (ends on a normal close) or
    :meth:`recv`; text messages are ``str``, binary ones ``bytes``. Both raise
    ``ConnectionClosed`` once the connection is closed, with the close code and reason as
    ``websockets`` reports them. Only one coroutine may wait for messages at a time.
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        max_size: int | None = None,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_buffer: int,
    ):
        self.protocol = protocol
        #: The same limit as the protocol's, for the frames received without it.
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.transport: asyncio.Transport | None = None
        #: The server's handshake response.
        self.response: Response | None = None
        self._loop = asyncio.get_running_loop()
        self._handshake_done = self._loop.create_future()
        self._lost = self._loop.create_future()
        #: Why the transport went away, if not a clean close (chained to ConnectionClosed).
        self._connection_exc: BaseException | None = None
        # Receiving: complete messages, their total size, the consumer's waiter (if waiting).
        self._messages: deque[Message] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future | None = None
        # Frames of a fragmented message being received, and whether it is text.
        self._fragments: list[bytes] | None = None
        self._fragments_text = True
        # Receiving without the library (see the module docstring): on once the handshake
        # response has been handed over whole and the connection is open, off for good once it
        # is closing. _partial holds the start of a frame that has not fully arrived;
        # _head_tail the last bytes of the handshake response seen, to find its end across reads.
        self._direct = False
        self._partial = b""
        self._head_tail = b""
        # Masking keys for sends: os.urandom bytes, used four at a time.
        self._masks = b""
        self._mask_at = 0
        # Sending: set by pause_writing()/resume_writing(); senders wait on _drained.
        self._writing_paused = False
        self._drained: asyncio.Future | None = None
        # Keepalive: payload of the ping awaiting its pong; one timer for "ping next" or "pong late".
        self._ping_payload: bytes | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        # Aborts the transport if the peer doesn't finish the close handshake in time.
        self._close_timer: asyncio.TimerHandle | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.protocol.state

    @property
    def close_code(self) -> int | None:
        """Close code received from the server; ``None`` until the connection is closed."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        return self.protocol.close_reason

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is over its high-water mark."""
        return self._writing_paused

    # -- sending -----------------------------------------------------------------------------

    def write(self, message: Message) -> None:
        """Send one message now, without waiting (the hot path).

        The frame goes straight into the transport, which buffers what the socket doesn't take.
        Callers that may outrun the peer should check :attr:`writing_paused` and use :meth:`send`
        then, so the buffer stays bounded.
        """
        if self.protocol.state is not OPEN:
            raise self._closed_exc()
        if isinstance(message, str):
            data, first = message.encode(), FIN_TEXT
        else:
            data, first = message, FIN_BINARY
        at = self._mask_at
        if at >= len(self._masks):
            self._masks, at = os.urandom(MASK_POOL_BYTES), 0
        self._mask_at = at + 4
        mask = self._masks[at : at + 4]
        # Every other path flushes what the library queues at once, so nothing it wrote can be
        # waiting to go out before this frame.
        self.transport.write(frame_header(first, len(data)) + mask + apply_mask(data, mask))

    async def send(self, message: Message) -> None:
        """Send one message; wait only while the transport is paused (flow control)."""
        self.write(message)
        while self._writing_paused:
            if self._drained is None:
                self._drained = self._loop.create_future()
            # Shielded: several senders share the future; one being cancelled mustn't cancel it.
            await asyncio.shield(self._drained)
        if self._lost.done():
            raise self._closed_exc()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the close handshake, then wait for the transport to close (at most
        ``close_timeout`` before it is aborted). Idempotent."""
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        self._arm_close_timer()
        await asyncio.shield(self._lost)

    # -- receiving ---------------------------------------------------------------------------

    async def recv(self) -> Message:
        """The next message; ``ConnectionClosed`` once the connection is closed."""
        while not self._messages:
            if self._lost.done():
                raise self._closed_exc()
            await self._wait_for_message()
        return self._pop()

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Messages until the connection closes: ends on a normal close (1000/1001), raises
        ``ConnectionClosedError`` otherwise."""
        messages = self._messages
        while True:
            if messages:
                yield self._pop()
            elif self._lost.done():
                exc = self._closed_exc()
                if isinstance(exc, ConnectionClosedOK):
                    return
                raise exc
            else:
                await self._wait_for_message()

    def _pop(self) -> Message:
        message = self._messages.popleft()
        self._buffered -= len(message)
        if self._reading_paused and self._buffered <= self.max_buffer // 4:
            # Hysteresis: resume at a quarter of the limit, not on every message around it.
            self._reading_paused = False
            self.transport.resume_reading()
        return message

    async def _wait_for_message(self) -> None:
        if self._waiter is not None:
            raise ConcurrencyError("another coroutine is already receiving messages")
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _deliver(self, message: Message) -> None:
        self._messages.append(message)
        self._buffered += len(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._buffered > self.max_buffer and not self._reading_paused:
            # The consumer fell far behind: let the kernel buffers (then TCP) push back on the
            # server instead of queueing without bound here.
            self._reading_paused = True
            self.transport.pause_reading()

    # -- asyncio.Protocol callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._direct:
            self._receive_frames(data)
        elif self.protocol.state is CONNECTING:
            self._receive_handshake(data)
        else:
            self._to_library(data)

    def eof_received(self) -> None:
        # A frame cut short goes to the library first, so that it reports the truncation.
        self._leave_direct(b"")
        # The protocol answers (closing our side too); returning None lets asyncio close the
        # transport, which is right: after the close handshake nothing more is written.
        self.protocol.receive_eof()
        self._process(self.protocol.events_received())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection_exc is None:
            self._connection_exc = exc
        self._direct = False
        self._partial = b""
        # receive_eof() is idempotent and guarantees the CLOSED state, which close_exc needs.
        self.protocol.receive_eof()
        self.protocol.data_to_send()  # nowhere to write it any more
        for timer in (self._keepalive_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive_timer = self._close_timer = None
        if not self._handshake_done.done():
            self._handshake_done.set_result(None)  # handshake_exc says what went wrong
        self._lost.set_result(None)
        # Wake whoever waits: they see the closed state and raise ConnectionClosed.
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    # -- internals ---------------------------------------------------------------------------

    async def _handshake(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None
    ) -> None:
        request = self.protocol.connect()
        if headers:
            request.headers.update(headers)
        request.headers.setdefault("User-Agent", USER_AGENT)
        self.protocol.send_request(request)
        self._flush()
        await self._handshake_done
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def _process(self, events: list) -> None:
        """Handle what the protocol parsed: write its replies, deliver messages."""
        protocol = self.protocol
        self._flush()  # pongs, the echoed close frame, EOF: queued by the protocol itself
        if not self._handshake_done.done():
            if events:
                # The first event is always the handshake response (failed or not).
                self.response = events.pop(0)
                self._handshake_done.set_result(None)
            elif protocol.handshake_exc is not None:
                self._handshake_done.set_result(None)
        try:
            for frame in events:
                opcode = frame.opcode
                if opcode is TEXT or opcode is BINARY:
                    if frame.fin:
                        self._deliver(frame.data.decode() if opcode is TEXT else bytes(frame.data))
                    else:
                        self._fragments = [frame.data]
                        self._fragments_text = opcode is TEXT
                elif opcode is CONT:
                    # The protocol checked the sequence (and max_size over all fragments).
                    self._fragments.append(frame.data)
                    if frame.fin:
                        data = b"".join(self._fragments)
                        self._fragments = None
                        self._deliver(data.decode() if self._fragments_text else data)
                elif opcode is PONG and frame.data == self._ping_payload:
                    self._pong_received()
                # PING and CLOSE: the protocol already queued the answer.
        except UnicodeDecodeError as exc:
            # The protocol leaves UTF-8 validation of text to the application (as RFC 6455 says,
            # fail with 1007); the events after it are dropped, as the protocol discards input.
            if protocol.state is OPEN:
                self._connection_exc = exc
                protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                self._flush()
        if protocol.close_expected():
            self._arm_close_timer()

    def _flush(self) -> None:
        transport = self.transport
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # SEND_EOF: half-close
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):  # uvloop raises RuntimeError when closing
                    pass
            else:  # TLS cannot half-close
                transport.close()

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and not self._lost.done():
            self._close_timer = self._loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self._connection_exc is None:
            self._connection_exc = TimeoutError("timed out while closing the connection")
        self.transport.abort()

    def _closed_exc(self) -> ConnectionClosed:
        protocol = self.protocol
        if protocol.state is CLOSED:
            exc = protocol.close_exc
            if exc.__cause__ is None:
                exc.__cause__ = self._connection_exc
            return exc
        # Still closing (a synchronous write can't wait for the end): the close frames so far.
        rcvd, sent = protocol.close_rcvd, protocol.close_sent
        ok = rcvd is not None and sent is not None
        ok = ok and rcvd.code in OK_CLOSE_CODES and sent.code in OK_CLOSE_CODES
        exc_type = ConnectionClosedOK if ok else ConnectionClosedError
        return exc_type(rcvd, sent, protocol.close_rcvd_then_sent)
