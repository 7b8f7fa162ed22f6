"""Keepalive pings of ``WebSocketConnection``: timers, not a task."""

from __future__ import annotations

import os

from websockets.frames import CloseCode
from websockets.protocol import OPEN


class Keepalive:
    """A mixin: a dead peer is detected within ``ping_interval + ping_timeout``.

    It uses the connection's ``protocol``, ``_loop``, ``_lost``, ``_flush`` and
    ``_arm_close_timer``.
    """

    def _start_keepalive(self) -> None:
        if self.ping_interval is not None and not self._lost.done():
            self._keepalive_timer = self._loop.call_later(self.ping_interval, self._send_ping)

    def _send_ping(self) -> None:
        self._keepalive_timer = None
        if self.protocol.state is not OPEN:
            return
        payload = os.urandom(4)
        self.protocol.send_ping(payload)
        self._flush()
        if self.ping_timeout is None:
            self._start_keepalive()  # keep pinging (it keeps NAT and proxies awake), no deadline
        else:
            self._ping_payload = payload
            self._keepalive_timer = self._loop.call_later(self.ping_timeout, self._ping_timed_out)

    def _pong_received(self) -> None:
        self._ping_payload = None
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        self._start_keepalive()

    def _ping_timed_out(self) -> None:
        # As websockets does: fail with 1011, then wait close_timeout for the TCP close.
        self._keepalive_timer = None
        self._ping_payload = None
        if self.protocol.state is OPEN:
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
        self._arm_close_timer()
