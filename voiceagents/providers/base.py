"""The voice-provider interface that ``CallSession`` drives, and the events providers emit.

All three seed architectures fit one shape: a provider is opened once per call, takes caller audio
(base64, in the provider's input format), and yields normalized events (agent audio, transcripts,
speech started/stopped, errors). The session asks it to speak (first message, operator ``say``), to
forget what the caller did not hear (``truncate``) and to pass DTMF on.

- OpenAI Realtime: one socket; every method maps to a client event.
- ElevenLabs ConvAI: one socket; ``interrupt`` only stops local playback (the server tracks it).
- Pipeline: STT socket → reply handler → TTS; the pipeline object implements this same interface.

Subclasses implement ``open``, ``send_audio``, ``events``, ``say``, ``interrupt``, ``send_dtmf``
and ``close``, and set ``input_format``/``output_format`` in ``open`` (formats may depend on the
carrier leg: μ-law pass-through on Twilio, PCM16 elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..audio.formats import AudioFormat


@dataclass(frozen=True)
class StageConfig:
    """One pipeline stage's service for one call (speech-to-text, reply or text-to-speech)."""

    #: The stage spec's id (``deepgram``, ``openai_chat``...); '' for a reply handler.
    id: str
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    model: str = ""
    voice: str = ""
    language: str = ""
    #: Reply stage: the LLM's system prompt, or the name of the registered reply handler.
    instructions: str = ""
    handler: str = ""


@dataclass(frozen=True)
class ProviderConfig:
    """Everything a provider needs for one call, snapshotted from the database at call start.

    ``api_key``/``base_url`` are the main credential's (empty for a provider with no vendor of
    its own, like the pipeline); ``stages`` holds each pipeline stage's own service and key.
    """

    call_id: str
    api_key: str = field(repr=False)
    base_url: str
    model: str
    voice: str
    instructions: str
    language: str
    options: dict[str, Any]
    #: The carrier leg's audio format; providers pick their formats to avoid transcoding it.
    carrier_format: AudioFormat
    connect_timeout: float = 10.0
    #: Stage name ('stt', 'reply', 'tts') → its configuration; empty for realtime providers.
    stages: Mapping[str, StageConfig] = field(default_factory=dict)


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderEvent:
    #: The vendor's message, kept for debugging and for fields we do not map yet.
    raw: dict | None = field(default=None, repr=False, compare=False, kw_only=True)


@dataclass(frozen=True)
class AgentAudio(ProviderEvent):
    """A chunk of agent speech, base64 in the provider's output format."""

    item_id: str
    response_id: str
    payload: str


@dataclass(frozen=True)
class AgentTurnStarted(ProviderEvent):
    """The agent starts a new spoken item (before its first audio)."""

    item_id: str
    response_id: str


@dataclass(frozen=True)
class AgentTranscript(ProviderEvent):
    """The final text of an agent item."""

    item_id: str
    text: str


@dataclass(frozen=True)
class AgentTurnDone(ProviderEvent):
    """A response finished: ``status`` is completed, cancelled, failed or incomplete."""

    response_id: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class CallerSpeechStarted(ProviderEvent):
    """The caller started talking (the barge-in trigger)."""

    item_id: str = ""
    audio_start_ms: int | None = None


@dataclass(frozen=True)
class CallerSpeechStopped(ProviderEvent):
    item_id: str = ""
    audio_end_ms: int | None = None


@dataclass(frozen=True)
class CallerTranscript(ProviderEvent):
    """The final text of a caller item (may arrive after the agent already answered)."""

    item_id: str
    text: str


@dataclass(frozen=True)
class ToolCall(ProviderEvent):
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ProviderErrorEvent(ProviderEvent):
    """An error the vendor reported. ``fatal`` errors end the call."""

    message: str
    code: str = ""
    fatal: bool = False


# -- the interface -----------------------------------------------------------------------------


class VoiceProvider:
    """Base class of the realtime voice providers. See the module docstring."""

    #: snake_case id, as in the provider registry.
    id: str = ""
    #: Display name in the vendor's spelling.
    name: str = ""

    def __init__(self, config: ProviderConfig):
        self.config = config
        #: Format of the audio ``send_audio`` takes; set by ``open``.
        self.input_format: AudioFormat | None = None
        #: Format of ``AgentAudio.payload``; set by ``open``.
        self.output_format: AudioFormat | None = None

    def _unimplemented(self, method: str):
        return NotImplementedError(f"{type(self).__name__}.{method}() must be implemented")

    async def open(self) -> None:
        """Connect and configure the session; raise ProviderConnectionError on failure."""
        raise self._unimplemented("open")

    async def send_audio(self, payload: str) -> None:
        """Send base64 caller audio in ``input_format``."""
        raise self._unimplemented("send_audio")

    def events(self) -> AsyncIterator[ProviderEvent]:
        """Yield normalized events until the provider closes; then stop (or raise on failure)."""
        raise self._unimplemented("events")

    async def say(self, text: str) -> None:
        """Make the agent speak ``text`` now (first message, operator ``say``)."""
        raise self._unimplemented("say")

    async def interrupt(self, item_id: str, audio_end_ms: int) -> None:
        """Barge-in: the caller heard only ``audio_end_ms`` of ``item_id``; stop that reply."""
        raise self._unimplemented("interrupt")

    async def send_dtmf(self, digit: str) -> None:
        raise self._unimplemented("send_dtmf")

    async def close(self) -> None:
        """Close the connection; idempotent."""
        raise self._unimplemented("close")
