"""Caller audio on its way to the provider.

Held (up to ``PENDING_AUDIO_MS``) while the provider socket opens, since carriers stream right
after ``start``; then forwarded frame by frame. When the carrier's inbound format is the
provider's input format, the carrier's base64 text is handed on untouched (Twilio μ-law to
OpenAI ``audio/pcmu``); otherwise the decoded bytes are converted once, straight to it.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Awaitable, Callable

from ..audio.convert import Converter
from ..audio.formats import AudioFormat
from .metrics import CallMetrics

#: Caller audio kept while the provider socket opens (Twilio streams right after ``start``).
PENDING_AUDIO_MS = 2000


class CallerAudio:
    def __init__(self, caller_format: AudioFormat, metrics: CallMetrics):
        self.format = caller_format
        self.metrics = metrics
        #: True once the provider takes audio; until then frames are held.
        self.ready = False
        #: Converts caller audio to the provider's input format; ``None``: pass-through.
        self.convert: Converter | None = None
        self._send: Callable[[str], Awaitable[None]] | None = None
        self._pending: deque[tuple[str, bytes]] = deque()
        self._pending_ms = 0.0

    def connect(self, send: Callable[[str], Awaitable[None]], fmt: AudioFormat) -> None:
        """The provider is open: ``send`` takes base64 audio in ``fmt``."""
        self._send = send
        if fmt != self.format:
            self.convert = Converter(self.format, fmt)

    async def flush(self) -> None:
        """Forward what was held, then go live (audio keeps arriving while this runs)."""
        while self._pending:
            payload, audio = self._pending.popleft()
            await self.forward(payload, audio)
        self._pending_ms = 0.0
        self.ready = True

    def hold(self, payload: str, audio: bytes) -> None:
        """Keep a frame until the provider is ready, dropping the oldest beyond the limit."""
        self.metrics.caller_audio_buffered_frames += 1
        self._pending.append((payload, audio))
        self._pending_ms += self.format.duration_ms(len(audio))
        while self._pending_ms > PENDING_AUDIO_MS and self._pending:
            _, dropped = self._pending.popleft()
            self._pending_ms -= self.format.duration_ms(len(dropped))
            self.metrics.caller_audio_dropped_frames += 1

    async def forward(self, payload: str, audio: bytes) -> None:
        """One frame to the provider (the hot path)."""
        if self.convert is None:
            await self._send(payload)
            return
        converted = self.convert.convert(audio)
        if converted:
            await self._send(base64.b64encode(converted).decode("ascii"))
