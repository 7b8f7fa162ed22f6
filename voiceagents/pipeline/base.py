"""What a pipeline stage does for one call: the interfaces ``PipelineProvider`` composes.

Every stage is built with its ``StageConfig`` (service, key, URL, model, voice, language, prompt)
and the call's ``StageContext``, opened once per call and closed at its end. They speak their
vendor's real protocol to the configured base URL and raise the project's exceptions:
``ProviderConnectionError`` when the service cannot be reached or drops, ``ProviderAPIError``
with the vendor's message when it refuses a request.

- ``SpeechToText``: caller audio in (raw bytes in ``input_format``, the hot path: 50 calls a
  second), ``SttEvent``s out. A streaming service (Deepgram) reports speech starts, interim and
  final transcripts and the end of a turn; a batch service (Whisper) segments the caller's audio
  itself with a voice activity detector and reports the same events for each utterance.
- ``ReplyGenerator``: one reply as a stream of text pieces for an ``on_message`` event (the LLM
  prompt of the admin; registered Python handlers are adapted to the same shape).
- ``TextToSpeech``: one stream of audio bytes in ``output_format`` per text; closing the stream
  early (``aclose()``) cancels the request (a barge-in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..audio.formats import AudioFormat
from ..providers.base import StageConfig

#: Speech without a pause for this long is ``SpeechSustained``: enough to interrupt the agent.
SUSTAINED_SPEECH_MS = 400
#: A pause shorter than this does not break a run of speech (syllables have gaps).
SUSTAINED_PAUSE_MS = 100


@dataclass(frozen=True)
class StageContext:
    """What every stage of one call shares."""

    call_id: str
    #: The carrier leg's audio format: stages pick formats that avoid transcoding it.
    carrier_format: AudioFormat
    connect_timeout: float = 10.0
    #: Seconds for each REST request (``HTTP_TIMEOUT``).
    http_timeout: float = 10.0
    #: The agent's provider options (``stt_options``, ``tts_options``, ``tts_model``...).
    options: Mapping[str, Any] = field(default_factory=dict)


# -- speech-to-text events -----------------------------------------------------------------------


@dataclass(frozen=True)
class SttEvent:
    #: The vendor's message, for debugging.
    raw: Any = field(default=None, repr=False, compare=False, kw_only=True)


@dataclass(frozen=True)
class SpeechStarted(SttEvent):
    """The caller started speaking, ``audio_ms`` into the audio sent (None if unknown)."""

    audio_ms: int | None = None


@dataclass(frozen=True)
class SpeechSustained(SttEvent):
    """The caller's speech has gone on without a pause for a while (``SUSTAINED_SPEECH_MS``),
    ``audio_ms`` into the audio sent: it is not a cough or a click. From stages that run their
    own voice activity detector (Whisper); a streaming service's words say the same sooner."""

    audio_ms: int | None = None


@dataclass(frozen=True)
class SpeechEnded(SttEvent):
    """The caller stopped speaking, ``audio_ms`` into the audio sent (from stages that run their
    own voice activity detector)."""

    audio_ms: int | None = None


@dataclass(frozen=True)
class Transcript(SttEvent):
    """Text of the caller's speech.

    ``final``: this span's text will not change (interim hypotheses are not final and a later
    event covers the same audio). ``end_of_turn``: the service judged the caller finished their
    turn after this span (Deepgram ``speech_final``; every Whisper utterance). The turn's text is
    the concatenation of its final spans.
    """

    text: str
    final: bool
    end_of_turn: bool = False
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None


@dataclass(frozen=True)
class UtteranceEnd(SttEvent):
    """The turn is over with no new text (Deepgram ``UtteranceEnd``): end it with the finals
    received so far, if not already ended."""

    audio_ms: int | None = None


# -- the stages ----------------------------------------------------------------------------------


class Stage:
    """Common ground: construction, ``open`` and ``close``."""

    #: The stage spec's id (``deepgram``, ``openai_tts``...).
    id: str = ""
    #: Display name in the vendor's spelling, for messages.
    name: str = ""

    def __init__(self, config: StageConfig, context: StageContext):
        self.config = config
        self.context = context

    def _unimplemented(self, method: str):
        return NotImplementedError(f"{type(self).__name__}.{method}() must be implemented")

    async def open(self) -> None:
        """Connect (or prepare a client); raise ``ProviderConnectionError`` on failure."""

    async def close(self) -> None:
        """Finish and release everything; idempotent, never raises."""


class SpeechToText(Stage):
    def __init__(self, config: StageConfig, context: StageContext):
        super().__init__(config, context)
        #: Format of the audio ``send_audio`` takes; set by ``open`` (the carrier's format
        #: when the service accepts it, so Twilio μ-law goes through untouched).
        self.input_format: AudioFormat | None = None

    async def send_audio(self, audio: bytes) -> None:
        """Caller audio in ``input_format`` (the hot path)."""
        raise self._unimplemented("send_audio")

    def events(self) -> AsyncIterator[SttEvent]:
        """Yield events until ``close``; raise ``ProviderConnectionError`` if the service drops."""
        raise self._unimplemented("events")

    async def agent_speaking(self, speaking: bool) -> None:
        """The agent started or stopped talking (a streaming service may need keep-alives
        while no caller audio is sent). Nothing by default."""


class ReplyGenerator(Stage):
    #: The vendor's token counts of the last reply (``prompt_tokens``, ``completion_tokens``), for
    #: the call's usage; ``None`` for a reply that is not billed by tokens (a Python handler).
    last_usage: Mapping[str, Any] | None = None
    #: Tools an LLM reply stage offers its model, and how it runs one: set by the pipeline
    #: (``await run_tool(call_id, name, arguments_json)`` → the result text for the model).
    tools: tuple = ()
    run_tool: Callable[[str, str, str], Awaitable[str]] | None = None

    def reply(self, event: Mapping[str, Any]) -> AsyncIterator[str]:
        """The reply to ``event`` (the ``on_message`` event: ``text``, ``history``...), as text
        pieces while they are generated. Closing the iterator early cancels the request."""
        raise self._unimplemented("reply")


class TextToSpeech(Stage):
    def __init__(self, config: StageConfig, context: StageContext):
        super().__init__(config, context)
        #: Format of the audio ``synthesize`` yields; set by ``open`` (the carrier's format when
        #: the service can produce it, else the service's native format, converted by the call).
        self.output_format: AudioFormat | None = None

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Audio for ``text`` in ``output_format``, streamed as it arrives (whole samples:
        never half a PCM16 sample). Closing the iterator early cancels the request."""
        raise self._unimplemented("synthesize")
