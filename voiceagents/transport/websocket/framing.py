"""The frames read and built here rather than by the library (RFC 6455 §5.2); see the package
docstring for which and why."""

from __future__ import annotations

from websockets.protocol import OPEN

# First byte of the frames framed here (RFC 6455 §5.2): FIN set, no RSV bit, opcode text/binary.
FIN_TEXT = 0x81
FIN_BINARY = 0x82
#: Second byte: the MASK bit (client frames have it, server frames must not).
MASK_BIT = 0x80
#: Masking keys are drawn from os.urandom this many bytes (256 keys) at a time.
MASK_POOL_BYTES = 1024
HEAD_END = b"\r\n\r\n"


def frame_header(first: int, length: int) -> bytes:
    """The header of a masked frame of ``length`` payload bytes, before its masking key."""
    if length < 126:
        return bytes((first, MASK_BIT | length))
    if length < 65536:
        return bytes((first, MASK_BIT | 126)) + length.to_bytes(2, "big")
    return bytes((first, MASK_BIT | 127)) + length.to_bytes(8, "big")


class DirectFraming:
    """The receive side of ``WebSocketConnection`` that bypasses the library for plain frames.

    A mixin: it uses the connection's ``protocol``, ``max_size``, ``_direct``, ``_partial``,
    ``_head_tail``, ``_fragments``, ``_deliver`` and ``_process``.
    """

    def _to_library(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._process(self.protocol.events_received())

    def _receive_handshake(self, data: bytes) -> None:
        """Give the library the handshake response, and no byte after it while the connection
        opens: the frames that follow it are read directly from their first byte on."""
        seen = self._head_tail + data
        end = seen.find(HEAD_END)
        if end < 0:
            self._head_tail = seen[-3:]
            self._to_library(data)
            return
        cut = end + len(HEAD_END) - len(self._head_tail)
        self._head_tail = b""
        self._to_library(data[:cut])
        if self.protocol.state is OPEN:
            self._direct = True
            if cut < len(data):
                self._receive_frames(data[cut:])
        elif cut < len(data):
            self._to_library(data[cut:])  # refused or invalid: a body, or whatever follows

    def _receive_frames(self, data: bytes) -> None:
        """Deliver the plain data frames in ``data`` (after any frame start kept from before);
        hand every other whole frame to the library."""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        pos, end = 0, len(data)
        max_size = self.max_size
        while end - pos >= 2:
            second = data[pos + 1]
            if second & MASK_BIT:
                self._leave_direct(data[pos:])  # a masked server frame: the library fails it
                return
            length, header = second, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if max_size is not None and length > max_size:
                self._leave_direct(data[pos:])  # the library fails it with 1009
                return
            stop = pos + header + length
            if stop > end:
                break
            first = data[pos]
            if first == FIN_TEXT and self._fragments is None:
                try:
                    self._deliver(data[pos + header : stop].decode())
                except UnicodeDecodeError:
                    self._leave_direct(data[pos:])  # the library's path fails it with 1007
                    return
            elif first == FIN_BINARY and self._fragments is None:
                self._deliver(data[pos + header : stop])
            else:
                # A control frame, a fragment, RSV bits or an unknown opcode: one whole frame.
                self._to_library(data[pos:stop])
                if self.protocol.state is not OPEN:
                    self._leave_direct(data[stop:])
                    return
            pos = stop
        if pos < end:
            self._partial = data[pos:]

    def _leave_direct(self, rest: bytes) -> None:
        """From here on the library reads everything: what is kept, then ``rest``."""
        self._direct = False
        rest = self._partial + rest
        self._partial = b""
        if rest:
            self._to_library(rest)
