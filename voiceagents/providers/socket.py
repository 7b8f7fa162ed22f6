"""``SocketProvider``: what every provider on one JSON WebSocket does the same way.

Sending (the hot path writes without awaiting unless the socket is backed up), the connected
check, a bounded quiet close, and how a close is described in errors. OpenAI Realtime and
ElevenLabs ConvAI build on it; their protocols stay in their own modules.
"""

from __future__ import annotations

import asyncio
import json

from websockets.exceptions import ConnectionClosed

from ..exceptions import ProviderConnectionError
from ..transport.websocket import WebSocketConnection
from .base import VoiceProvider

#: Seconds our close handshake may take before the socket is aborted (call teardown waits on it).
CLOSE_TIMEOUT = 2.0


class SocketProvider(VoiceProvider):
    def __init__(self, config):
        super().__init__(config)
        self._ws: WebSocketConnection | None = None

    def _connected_ws(self) -> WebSocketConnection:
        ws = self._ws
        if ws is None:
            raise ProviderConnectionError(
                "not connected", vendor=self.id, call_id=self.config.call_id
            )
        return ws

    async def _send(self, message: dict) -> None:
        await self._send_text(json.dumps(message))

    async def _send_text(self, text: str) -> None:
        ws = self._connected_ws()
        try:
            if ws.writing_paused:
                await ws.send(text)  # the socket is backed up: wait for it to drain
            else:
                ws.write(text)  # the hot path (50 frames/s): no await, straight to the socket
        except ConnectionClosed as err:
            raise ProviderConnectionError(
                f"{self.name} connection closed", vendor=self.id, call_id=self.config.call_id
            ) from err

    async def close(self) -> None:
        await self._close_quietly()

    async def _close_quietly(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                # close() is bounded by CLOSE_TIMEOUT; the wait_for is a safety net.
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 1)
            except (TimeoutError, OSError, ConnectionClosed):
                pass


def close_summary(err: ConnectionClosed) -> str:
    """The close code and reason of a ``ConnectionClosed``, for error messages."""
    close = err.rcvd or err.sent
    if close is None:
        return "no close frame"
    return f"code {close.code}: {close.reason}" if close.reason else f"code {close.code}"
