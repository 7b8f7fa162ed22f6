"""OpenAI Whisper (``POST /v1/audio/transcriptions``): batch transcription of whole utterances.

Whisper does not listen to a stream: it transcribes files. So this stage finds the caller's
utterances itself with the audio core's voice activity detector (``utterances.py``, shared with
the offline stage) and sends each one, as a small WAV file, in a request of its own (see
docs/stages/whisper.md):

- the VAD's ``start`` is reported at once as ``SpeechStarted``, speech that goes on without a
  pause for ``SUSTAINED_SPEECH_MS`` as ``SpeechSustained`` and the VAD's ``end`` as
  ``SpeechEnded`` (for barge-in: sustained speech confirms one, a cough does not);
- at its ``end`` (``endpointing_ms`` of silence, 600 by default) the utterance is cut, from
  ``PRE_ROLL_MS`` before the start (the VAD needs ``MIN_SPEECH_MS`` of voice to be sure, and
  soft onsets come before that) to ``TAIL_MS`` after the end, and transcribed in a background
  task while the next audio keeps coming;
- results are reported in utterance order even when requests finish out of order: each
  utterance ends with a ``Transcript(final=True, end_of_turn=True)``, or an ``UtteranceEnd``
  when Whisper heard no words in it.

An utterance is never cut inside speech, except by the ``MAX_UTTERANCE_MS`` cap that stops a
runaway (music on hold, a noisy line taken for a voice) from growing without bound: such a
piece is reported with ``end_of_turn=False`` and the utterance goes on.

Failures: a refused key or request (401, 400, 403, 404...) is fatal and raised out of
``events()``: every other utterance would fail the same way. A passing failure of one utterance
(timeout, dropped connection, 429, 5xx) is logged and that utterance is lost, as if the
caller had not been heard (they repeat themselves); ``MAX_CONSECUTIVE_FAILURES`` in a row are
raised like a fatal error.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections import deque
from collections.abc import AsyncIterator

import httpx

from ..audio.formats import PCM16_8K, PCM16_16K
from ..exceptions import (
    ProviderConnectionError,
    ProviderProtocolError,
    VoiceAgentsError,
)
from ..transport import tls
from .base import SpeechToText, SttEvent, Transcript, UtteranceEnd
from .openai_rest import VENDOR, api_error, auth_headers

# The segmenter's limits, re-exported: they are this stage's behaviour as much as its own.
from .utterances import (  # noqa: F401
    DEFAULT_ENDPOINTING_MS,
    MAX_UTTERANCE_MS,
    EventQueue,
    Utterance,
    UtteranceSegmenter,
    create_utterance_vad,
)

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://api.openai.com/v1/audio/transcriptions"
DEFAULT_MODEL = "whisper-1"
#: Pieces shorter than this are not sent (OpenAI refuses audio under 0.1 s).
MIN_REQUEST_MS = 100
#: Passing failures in a row that end the stage.
MAX_CONSECUTIVE_FAILURES = 3
#: Statuses worth another try with the next utterance; any other refusal is fatal.
_PASSING_STATUSES = frozenset({408, 409, 429})


class _PassingFailure(Exception):
    """One utterance failed for a reason that may not repeat; ``fallback`` replaces its result."""

    def __init__(self, error: VoiceAgentsError, fallback: SttEvent | None):
        super().__init__(str(error))
        self.error = error
        self.fallback = fallback


class WhisperSTT(SpeechToText):
    id = "whisper"
    name = "OpenAI Whisper"

    def __init__(self, config, context):
        super().__init__(config, context)
        self._client: httpx.AsyncClient | None = None
        self._segmenter: UtteranceSegmenter | None = None
        self._rate = 0
        #: Transcriptions (and ready results) in utterance order.
        self._pending: deque[asyncio.Future] = deque()
        self._events = EventQueue()
        self._failures = 0
        self._failed = False
        self._closed = False

    # -- set-up and teardown ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._segmenter is not None:
            return
        # The session gives us PCM: μ-law is decoded at the carrier's 8 kHz (no resampling),
        # anything wider is taken at 16 kHz, which is all Whisper uses.
        self._rate = 8000 if self.context.carrier_format.sample_rate <= 8000 else 16000
        self.input_format = PCM16_8K if self._rate == 8000 else PCM16_16K
        self._segmenter = UtteranceSegmenter(
            create_utterance_vad(self.context.options, self._rate),
            self._rate,
            on_event=self._events.put_nowait,
            on_utterance=self._cut,
        )
        self._client = tls.async_client(
            timeout=httpx.Timeout(self.context.http_timeout, connect=self.context.connect_timeout)
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [task for task in self._pending if not task.done()]
        self._pending.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - close() never raises
                pass
        self._events.close()

    # -- caller audio (the hot path) --------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        if self._segmenter is None or self._closed or self._failed:
            return
        self._segmenter.feed(audio)

    def _cut(self, utterance: Utterance) -> None:
        """Transcribe an utterance the segmenter cut, in a background task."""
        start_ms, end_ms = utterance.start_ms, utterance.end_ms
        fallback = UtteranceEnd(audio_ms=end_ms) if utterance.end_of_turn else None
        if end_ms - start_ms < MIN_REQUEST_MS:
            # Only the leftover of a capped utterance can be this short.
            future = asyncio.get_running_loop().create_future()
            future.set_result(fallback)
        else:
            future = asyncio.create_task(
                self._transcribe(utterance.pcm, start_ms, end_ms, utterance.end_of_turn, fallback)
            )
        self._pending.append(future)
        future.add_done_callback(self._deliver)

    # -- transcription (background tasks) ---------------------------------------------------------

    def form_fields(self) -> dict:
        """The form fields besides the file; ``stt_options`` (``prompt``, ``temperature``...)
        are merged in, but the response format stays JSON, which is what we read."""
        fields = {"model": self.config.model or DEFAULT_MODEL}
        # OpenAI wants ISO-639-1: the primary subtag of the agent's BCP-47 tag ("en" of "en-GB").
        language = self.config.language.split("-")[0].lower()
        if language:
            fields["language"] = language
        fields.update(self.context.options.get("stt_options") or {})
        fields["response_format"] = "json"
        return fields

    async def _transcribe(
        self, pcm: bytes, start_ms: int, end_ms: int, end_of_turn: bool, fallback
    ) -> SttEvent | None:
        call_id = self.context.call_id
        try:
            response = await self._client.post(
                self.config.base_url or DEFAULT_URL,
                headers=auth_headers(self.config.api_key),
                data=self.form_fields(),
                files={"file": ("utterance.wav", wav_bytes(pcm, self._rate), "audio/wav")},
            )
        except httpx.HTTPError as err:
            error = ProviderConnectionError(
                f"{self.name} request failed: {err}", vendor=VENDOR, call_id=call_id
            )
            raise _PassingFailure(error, fallback) from err
        if response.status_code != 200:
            error = api_error(self.name, response, call_id=call_id)
            if response.status_code in _PASSING_STATUSES or response.status_code >= 500:
                raise _PassingFailure(error, fallback)
            raise error
        try:
            body = response.json()
            text = str(body["text"]).strip()
        except (ValueError, KeyError, TypeError) as err:
            raise ProviderProtocolError(
                f"{self.name} answered without a JSON text",
                vendor=VENDOR,
                call_id=call_id,
                response=response.text,
            ) from err
        if not text:
            return fallback
        return Transcript(
            text,
            final=True,
            end_of_turn=end_of_turn,
            audio_start_ms=start_ms,
            audio_end_ms=end_ms,
            raw=body,
        )

    def _deliver(self, _done: asyncio.Future) -> None:
        """Pass on every finished result at the head of the line, in utterance order."""
        while self._pending and self._pending[0].done():
            future = self._pending.popleft()
            if future.cancelled() or self._failed:
                continue
            error = future.exception()
            if error is None:
                self._failures = 0
                result = future.result()
            elif isinstance(error, _PassingFailure):
                self._failures += 1
                logger.warning(
                    "call %s: %s lost an utterance (%d in a row): %s",
                    self.context.call_id,
                    self.name,
                    self._failures,
                    error.error,
                )
                if self._failures >= MAX_CONSECUTIVE_FAILURES:
                    self._fail(error.error)
                    continue
                result = error.fallback
            else:
                self._fail(error)
                continue
            if result is not None:
                self._events.put_nowait(result)

    def _fail(self, error: BaseException) -> None:
        self._failed = True
        self._events.put_nowait(error)

    # -- events -----------------------------------------------------------------------------------

    def events(self) -> AsyncIterator[SttEvent]:
        return self._events.stream()


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """``pcm`` (PCM16 mono) as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()
