"""The voice-provider interface that ``CallSession`` drives, and the neutral events providers emit.

Every voice architecture fits one shape: a provider is opened once per call, takes caller audio
(base64, in the provider's input format) and yields events in a vocabulary that knows no vendor:
agent audio, agent turn started / finished (cancelled or not), caller speech started / stopped,
caller and agent transcripts, tool calls, errors. The session asks it to speak (first message,
operator ``say``), to stop on a barge-in (``interrupt(heard_ms)``) and to pass DTMF on.

Turns are named by *turn ids*: opaque strings the provider chooses (OpenAI uses its item ids), the
same for every event of one turn. Vendor ids the session has no use for (OpenAI response ids,
ElevenLabs event ids) stay inside the provider; the vendor's message is kept on each event as
``raw``, for debugging and for fields we do not map yet.

- OpenAI Realtime: one socket; ``interrupt`` truncates the item it tracks itself (and cancels the
  reply when the server won't).
- ElevenLabs ConvAI: one socket; the server already stopped, ``interrupt`` fixes the transcript.
- Pipeline (STT → reply → TTS): ``interrupt`` stops TTS and cuts the history to what was heard;
  it declares ``needs_local_vad`` if its STT reports no speech start, and the session detects
  caller speech itself.

Subclasses declare ``capabilities``, implement ``open``, ``send_audio``, ``events``, ``say``,
``interrupt``, ``send_dtmf`` and ``close``, and set ``input_format``/``output_format`` in ``open``
(formats may depend on the carrier leg: μ-law pass-through on Twilio, PCM16 elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..audio.formats import AudioFormat
from ..tools import ToolSpec
from ..usage import UsageMeter


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
    #: The agent's first message, variables filled. Only a provider that declares
    #: ``speaks_first_message`` reads it (it must be sent when the conversation is set up); the
    #: session asks the others with ``say()`` once they are open.
    first_message: str = ""
    #: Tools the model is offered; the session runs them and answers with ``tool_result``.
    tools: tuple[ToolSpec, ...] = ()
    #: The agent's variables and the call's (``caller_number``, ``called_number``), for vendors
    #: that fill placeholders themselves (ElevenLabs' dynamic variables).
    variables: Mapping[str, Any] = field(default_factory=dict)
    #: Seconds for each REST request a provider makes during the call (``HTTP_TIMEOUT``).
    http_timeout: float = 10.0
    #: The agent's slug (the pipeline's reply handlers get it).
    agent: str = ""


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderEvent:
    #: The vendor's message, kept for debugging and for fields we do not map yet.
    raw: Any = field(default=None, repr=False, compare=False, kw_only=True)


@dataclass(frozen=True)
class AgentAudio(ProviderEvent):
    """A chunk of agent speech of turn ``turn_id``, base64 in the provider's output format."""

    turn_id: str
    payload_b64: str


@dataclass(frozen=True)
class AgentTurnStarted(ProviderEvent):
    """The agent starts a new spoken turn (before its first audio)."""

    turn_id: str


@dataclass(frozen=True)
class AgentTranscript(ProviderEvent):
    """The final text of an agent turn.

    ``corrected``: the vendor replaced an earlier text of the turn with what was really spoken
    before the caller cut in (ElevenLabs' ``agent_response_correction``): the stored turn takes
    the new text and is marked interrupted.
    """

    turn_id: str
    text: str
    corrected: bool = False


@dataclass(frozen=True)
class AgentTurnFinished(ProviderEvent):
    """The provider has no more audio for ``turn_id`` (empty: the provider cannot tell which).

    ``cancelled``: it stopped before the end (a barge-in, or the provider's own decision).
    ``error``: why it failed, when it did (the call goes on; fatal failures are errors).
    """

    turn_id: str
    cancelled: bool = False
    error: str = ""


@dataclass(frozen=True)
class CallerSpeechStarted(ProviderEvent):
    """The caller started talking (the barge-in trigger).

    ``turn_id`` names the caller turn if the provider already knows it; ``audio_ms`` is where the
    speech began in the caller audio sent to the provider, if it says.
    """

    turn_id: str = ""
    audio_ms: int | None = None


@dataclass(frozen=True)
class CallerSpeechStopped(ProviderEvent):
    """The caller stopped talking; ``audio_ms`` is where, in the caller audio, if known."""

    turn_id: str = ""
    audio_ms: int | None = None


@dataclass(frozen=True)
class CallerTranscript(ProviderEvent):
    """The final text of a caller turn (may arrive after the agent already answered)."""

    turn_id: str
    text: str


@dataclass(frozen=True)
class ToolCall(ProviderEvent):
    """The model calls a tool; the session answers with ``VoiceProvider.tool_result(call_id)``.

    ``arguments`` is the JSON text of the parameters object, as models produce it (it may be
    malformed: the session answers that with an error result).
    """

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ConversationEnded(ProviderEvent):
    """The vendor ended the conversation normally (e.g. its agent hung up, or a time limit of
    its own): the call ends once the agent's last words have played. ``reason`` is the vendor's."""

    reason: str = ""


@dataclass(frozen=True)
class ProviderErrorEvent(ProviderEvent):
    """An error the vendor reported. ``fatal`` errors end the call."""

    message: str
    code: str = ""
    fatal: bool = False


# -- what a provider can do ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderCapabilities:
    """What a provider does itself, so that the session does the rest.

    ``server_turn_detection``: the provider decides when the caller's turn is over and replies
    on its own. ``truncation``: after ``interrupt(heard_ms)`` its conversation holds only what
    the caller heard (else transcripts of interrupted turns may hold unheard text; the session
    records which on the barge-in). ``needs_local_vad``: it reports no caller speech start, so
    the session runs a voice activity detector on the caller audio, handles the
    ``CallerSpeechStarted``/``Stopped`` it finds like the provider's own and hands them to
    ``VoiceProvider.local_speech``.
    """

    server_turn_detection: bool = True
    truncation: bool = False
    needs_local_vad: bool = False
    #: It speaks ``ProviderConfig.first_message`` itself when the conversation opens (ElevenLabs
    #: takes it with the conversation's set-up); the session does not ``say()`` it.
    speaks_first_message: bool = False
    #: Seconds after which the vendor ends a session of its own accord (OpenAI Realtime: about
    #: an hour); the session renews it at a pause between turns before then. ``None``: no limit.
    max_session_s: float | None = None


@dataclass(frozen=True)
class PastTurn:
    """One turn of the conversation so far, as text, for a provider reopened mid-call."""

    role: str  # "caller" or "agent"
    text: str


# -- the interface -----------------------------------------------------------------------------


class VoiceProvider:
    """Base class of the voice providers. See the module docstring."""

    #: snake_case id, as in the provider registry.
    id: str = ""
    #: Display name in the vendor's spelling.
    name: str = ""
    #: Declared on the class; an instance whose options change what it can do (OpenAI with turn
    #: detection off) sets its own in ``__init__``. The session reads it once the provider is open.
    capabilities: ProviderCapabilities = ProviderCapabilities()

    def __init__(self, config: ProviderConfig):
        self.config = config
        #: What the call used of paid services (tokens, seconds, characters), for its cost; the
        #: session hands one meter from instance to instance when it reopens a provider.
        self.usage = UsageMeter()
        #: Format of the audio ``send_audio`` takes; set by ``open``.
        self.input_format: AudioFormat | None = None
        #: Format of ``AgentAudio.payload_b64``; set by ``open``.
        self.output_format: AudioFormat | None = None
        #: The vendor's own id of this conversation (OpenAI session, ElevenLabs conversation),
        #: once known; stored on the call.
        self.session_id: str = ""
        #: Set by ``restore``: the conversation so far, what to say on reopening, and a prefix
        #: that keeps this instance's turn ids apart from the ones of the instance it replaces.
        self.past_turns: tuple[PastTurn, ...] = ()
        self.resume_line = ""
        self.turn_prefix = ""

    def restore(
        self, history: tuple[PastTurn, ...], *, resume_line: str = "", turn_prefix: str = ""
    ) -> None:
        """Before ``open``: this provider replaces one that was lost (or renewed) mid-call.

        ``open`` then gives the vendor the conversation so far (as text) after the
        instructions. ``resume_line`` is what the agent says once reopened ('' for a silent
        renewal); a provider that ``speaks_first_message`` says it instead of the first message,
        the others are asked with ``say()`` by the session. Turn ids the provider makes up
        itself start with ``turn_prefix``.
        """
        self.past_turns = tuple(history)
        self.resume_line = resume_line
        self.turn_prefix = turn_prefix

    def update_options(self, overrides: Mapping[str, Any]) -> None:
        """Before ``open``: options decided at call start (e.g. by the spec's provisioner)."""
        if overrides:
            self.config = replace(self.config, options={**self.config.options, **overrides})

    def _unimplemented(self, method: str):
        return NotImplementedError(f"{type(self).__name__}.{method}() must be implemented")

    async def open(self) -> None:
        """Connect and configure the session; raise ProviderConnectionError on failure."""
        raise self._unimplemented("open")

    async def send_audio(self, payload_b64: str) -> None:
        """Send base64 caller audio in ``input_format`` (the hot path: 50 calls a second)."""
        raise self._unimplemented("send_audio")

    def events(self) -> AsyncIterator[ProviderEvent]:
        """Yield events until the provider closes; then stop (or raise on failure)."""
        raise self._unimplemented("events")

    async def say(self, text: str) -> None:
        """Make the agent speak ``text`` now (first message, operator ``say``)."""
        raise self._unimplemented("say")

    async def interrupt(self, heard_ms: int) -> None:
        """Barge-in: the caller heard only the first ``heard_ms`` of the agent turn that was
        playing (the last one ``AgentAudio`` was yielded for); stop it and forget the rest.
        Audio of that turn yielded afterwards is dropped by the session anyway."""
        raise self._unimplemented("interrupt")

    async def resume(self) -> bool:
        """After a false interruption (the caller said nothing: a noise cut the agent off): pick
        up the turn that ``interrupt`` stopped, from the sentence that was cut, instead of
        leaving silence. Returns False if this provider cannot (the default)."""
        return False

    async def send_dtmf(self, digit: str) -> None:
        raise self._unimplemented("send_dtmf")

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        """The answer to the ``ToolCall`` ``call_id``: ``output`` (text, often JSON) for the model;
        ``is_error`` when the tool refused or failed (the model is told so and goes on)."""
        raise self._unimplemented("tool_result")

    async def local_speech(self, event: CallerSpeechStarted | CallerSpeechStopped) -> None:
        """With ``needs_local_vad``: the session detected the caller starting or stopping to
        speak (e.g. a pipeline ends the caller's turn on a stop). Nothing by default."""

    async def close(self) -> None:
        """Close the connection; idempotent."""
        raise self._unimplemented("close")

    def report(self) -> dict[str, Any]:
        """Provider-specific figures for the call's metrics, read when the call ends."""
        return {}
