"""ElevenLabs Conversational AI: one WebSocket per call to an ElevenLabs agent
(docs/providers/elevenlabs_convai.md).

Setting up a call:

1. The spec's provisioner (``elevenlabs_agents.provision``) has made sure an ElevenLabs agent
   exists for our ``Agent`` and the carrier's audio format, and put its id in the options.
2. ``open`` fetches a signed URL for it (REST, ``xi-api-key``: the key never travels on the
   socket), connects, and sends ``conversation_initiation_client_data`` with the agent's prompt,
   first message, language, voice id and model as overrides, and the call's dynamic variables.
3. The first server message, ``conversation_initiation_metadata``, names the conversation and the
   formats ElevenLabs really uses. We ask for μ-law 8 kHz on μ-law carriers (pass-through, never
   decoded) and PCM 16 kHz otherwise; if the agent uses something else (an agent configured by
   hand), those formats are declared instead, the session converts with the audio core, and a
   warning says so once.

During the call every caller frame goes up as ``user_audio_chunk`` (silence too: ElevenLabs runs
its own turn-taking and times out a silent client), ``ping`` is answered with ``pong`` as soon
as it is read, and the server's events become neutral ones:

- ``audio`` → ``AgentAudio``; turns are ours (``a1``, ``a2``...): a turn starts with the first
  audio or text of an utterance and ends at ``agent_response_complete``, at the next utterance
  (a higher ``event_id``), or when the caller speaks. Audio with an ``event_id`` at or below the
  last interruption's is dropped, as the official SDK does.
- ``interruption`` → ``CallerSpeechStarted``: the session clears the carrier at once.
  ElevenLabs has already stopped the turn, so ``interrupt(heard_ms)`` tells it nothing (it
  sends the text actually spoken as ``agent_response_correction``, which replaces the turn's text).
- ``user_transcript`` → ``CallerTranscript``; ``agent_response`` → ``AgentTranscript``.
- ``client_tool_call`` → ``ToolCall``, answered with ``client_tool_result``.
- A normal close by the server (its agent ended the call) → ``ConversationEnded``; any other
  close → ``ProviderConnectionError`` with the code and reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..audio.formats import MULAW_8K, AudioFormat, Encoding
from ..exceptions import (
    ProviderAPIError,
    ProviderConnectionError,
    ProviderProtocolError,
    VoiceAgentsError,
)
from ..transport.websocket import connect
from .base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerTranscript,
    ConversationEnded,
    ProviderCapabilities,
    ProviderErrorEvent,
    ProviderEvent,
    ToolCall,
)
from .elevenlabs_agents import format_for
from .elevenlabs_api import ElevenLabsAPI
from .elevenlabs_voices import resolve_voice_id
from .options import deep_merged
from .socket import CLOSE_TIMEOUT, SocketProvider, close_summary

logger = logging.getLogger(__name__)

#: An agent turn's audio is small; a generous cap still refuses a runaway frame.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: What DTMF becomes: background context (no turn is started) or a user message (the agent
#: answers it). Chosen with the provider option ``dtmf``.
DTMF_MODES = ("contextual_update", "user_message")


def elevenlabs_format(fmt: AudioFormat) -> str:
    """The ElevenLabs format literal of ``fmt`` (only μ-law 8 kHz and PCM16 LE exist there)."""
    if fmt == MULAW_8K:
        return "ulaw_8000"
    if fmt.encoding is Encoding.PCM16:
        return f"pcm_{fmt.sample_rate}"
    raise ValueError(f"ElevenLabs has no {fmt} format")


def audio_format(literal: str) -> AudioFormat:
    """The ``AudioFormat`` of an ElevenLabs format literal (``ulaw_8000``, ``pcm_16000``...)."""
    kind, _, rate = str(literal).partition("_")
    if kind == "ulaw" and rate == "8000":
        return MULAW_8K
    if kind == "pcm" and rate.isdigit():
        return AudioFormat(Encoding.PCM16, int(rate))
    raise ValueError(f"unknown ElevenLabs audio format {literal!r}")


class ElevenLabsConvAIProvider(SocketProvider):
    id = "elevenlabs_convai"
    name = "ElevenLabs Conversational AI"
    capabilities = ProviderCapabilities(
        server_turn_detection=True, truncation=False, speaks_first_message=True
    )

    def __init__(self, config):
        super().__init__(config)
        #: Server messages read by ``open`` after the metadata, handed to ``events`` first.
        self._early: list[dict] = []
        self._turns = 0
        self._caller_turns = 0
        #: The agent turn receiving audio/text now, its utterance's event_id, whether it has text.
        self._turn = ""
        self._turn_event_id: int | None = None
        self._turn_has_text = False
        #: The agent turn an ``agent_response_correction`` applies to (the last one cut off).
        self._last_cut_turn = ""
        self._last_turn = ""
        #: Utterance event_id → our turn id (an interruption names the utterance it cut, which
        #: may have finished streaming long before it finished playing).
        self._turn_of_event: dict[int, str] = {}
        #: Audio with an event_id at or below this one belongs to an interrupted utterance.
        self._interrupted_event_id = -1
        #: A caller turn opened by an interruption, named again by its transcript.
        self._caller_turn = ""

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        config = self.config
        agent_id = str(config.options.get("agent_id") or "")
        if not agent_id:
            raise ProviderConnectionError(
                "no ElevenLabs agent to talk to (it is created when the call starts, or "
                "entered as the agent's remote agent ID)",
                vendor=self.id,
                call_id=config.call_id,
            )
        api = ElevenLabsAPI(config.api_key, config.base_url, timeout=config.connect_timeout)
        try:
            url = await api.signed_url(agent_id, call_id=config.call_id)
        except ProviderAPIError as err:
            raise ProviderConnectionError(
                str(err.args[0]) if err.args else "ElevenLabs refused a signed URL",
                vendor=self.id,
                call_id=config.call_id,
                status_code=err.status_code,
                response=err.response,
            ) from err
        try:
            self._ws = await connect(
                url,
                open_timeout=config.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                close_timeout=CLOSE_TIMEOUT,
            )
        except InvalidStatus as err:
            raise ProviderConnectionError(
                "ElevenLabs refused the conversation socket",
                vendor=self.id,
                call_id=config.call_id,
                status_code=err.response.status_code,
                response=err.response.body,
            ) from err
        except (OSError, InvalidHandshake, TimeoutError) as err:
            raise ProviderConnectionError(
                "cannot reach ElevenLabs", vendor=self.id, call_id=config.call_id
            ) from err
        await self._send(self.initiation_data())
        metadata = await self._await_metadata()
        self._use_formats(metadata)

    def initiation_data(self) -> dict[str, Any]:
        """``conversation_initiation_client_data``: the overrides and the dynamic variables."""
        config = self.config
        agent: dict[str, Any] = {"language": config.language.split("-")[0].lower()}
        prompt = config.instructions + history_prompt(self.past_turns)
        if prompt:
            agent["prompt"] = {"prompt": prompt}
        # Reopened mid-call: the resume line ('' : the agent waits for the caller), never the
        # greeting again.
        first_message = self.resume_line if self.past_turns else config.first_message
        if first_message or self.past_turns:
            agent["first_message"] = first_message
        tts: dict[str, Any] = {"voice_id": resolve_voice_id(config.voice)}
        if config.model:
            tts["model_id"] = config.model
        override = deep_merged(
            {"agent": agent, "tts": tts}, config.options.get("conversation_config_override") or {}
        )
        variables = {
            **{k: _variable(v) for k, v in config.variables.items()},
            **(config.options.get("dynamic_variables") or {}),
        }
        data: dict[str, Any] = {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": override,
        }
        if variables:
            data["dynamic_variables"] = variables
        return data

    async def _await_metadata(self) -> dict:
        """The first server message must be ``conversation_initiation_metadata``. A close before
        it is ElevenLabs refusing the set-up (an override the agent does not allow, a missing
        dynamic variable, a bad agent id): its code and reason go into the error."""
        ws = self._ws
        assert ws is not None
        deadline = asyncio.get_running_loop().time() + self.config.connect_timeout
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                message = _parse(await asyncio.wait_for(ws.recv(), max(remaining, 0.001)))
                if message is None:
                    continue
                if message.get("type") == "conversation_initiation_metadata":
                    return message.get("conversation_initiation_metadata_event") or {}
                self._early.append(message)
        except ConnectionClosed as err:
            await self._close_quietly()
            raise ProviderConnectionError(
                "ElevenLabs ended the conversation as it was being set up "
                f"({close_summary(err)}); check that the agent allows the overrides we send "
                "(prompt, first message, language, voice) and the dynamic variables it needs",
                vendor=self.id,
                call_id=self.config.call_id,
            ) from err
        except TimeoutError as err:
            await self._close_quietly()
            raise ProviderConnectionError(
                "ElevenLabs did not start the conversation in time",
                vendor=self.id,
                call_id=self.config.call_id,
            ) from err

    def _use_formats(self, metadata: dict) -> None:
        self.session_id = str(metadata.get("conversation_id") or "")
        # What the agent was synced with for this carrier (μ-law passes through untouched).
        wanted = audio_format(format_for(self.config.carrier_format))
        formats = []
        for key in ("user_input_audio_format", "agent_output_audio_format"):
            literal = metadata.get(key) or elevenlabs_format(wanted)
            try:
                formats.append(audio_format(literal))
            except ValueError as err:
                raise ProviderProtocolError(
                    f"ElevenLabs uses an audio format we cannot convert: {literal!r}",
                    vendor=self.id,
                    call_id=self.config.call_id,
                ) from err
        self.input_format, self.output_format = formats
        if self.input_format != wanted or self.output_format != wanted:
            logger.warning(
                "call %s: the ElevenLabs agent %s takes %s and speaks %s; %s was expected for "
                "this carrier, so the audio is converted (sync the agent, or set its formats, "
                "to avoid it)",
                self.config.call_id,
                self.config.options.get("agent_id"),
                elevenlabs_format(self.input_format),
                elevenlabs_format(self.output_format),
                elevenlabs_format(wanted),
            )
        logger.debug("call %s: ElevenLabs conversation %s", self.config.call_id, self.session_id)

    # -- sending -------------------------------------------------------------------------------

    async def send_audio(self, payload_b64: str) -> None:
        # Base64 needs no JSON escaping: build the frame without json.dumps (hot path).
        await self._send_text('{"user_audio_chunk":"' + payload_b64 + '"}')

    async def say(self, text: str) -> None:
        """ElevenLabs has no "speak this" message: the request goes in as a user message that
        asks the agent to say the text (it appears as such in ElevenLabs' own transcript)."""
        await self._send(
            {
                "type": "user_message",
                "text": "Say exactly the following to the caller, word for word, and nothing "
                f"else: {text}",
            }
        )

    async def interrupt(self, heard_ms: int) -> None:
        """The server already stopped the turn (its ``interruption`` is what triggered the
        barge-in); drop whatever audio of the cut utterance is still on its way."""
        if self._turn_event_id is not None:
            self._interrupted_event_id = max(self._interrupted_event_id, self._turn_event_id)
        if self._turn:
            self._last_cut_turn = self._turn
        self._turn = ""
        self._turn_event_id = None

    async def send_dtmf(self, digit: str) -> None:
        mode = self.config.options.get("dtmf") or "contextual_update"
        if mode == "user_message":
            await self._send({"type": "user_message", "text": f"I pressed the key {digit}."})
        else:
            await self._send(
                {
                    "type": "contextual_update",
                    "text": f"The caller pressed the key {digit} on their keypad.",
                }
            )

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        await self._send(
            {
                "type": "client_tool_result",
                "tool_call_id": call_id,
                "result": output,
                "is_error": is_error,
            }
        )

    # -- receiving -----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ProviderEvent]:
        ws = self._connected_ws()
        early, self._early = self._early, []
        for message in early:
            for event in await self._map(message):
                yield event
        try:
            async for raw in ws:
                message = _parse(raw)
                if message is None:
                    logger.warning(
                        "call %s: ElevenLabs sent a frame that is not a JSON object",
                        self.config.call_id,
                    )
                    continue
                for event in await self._map(message):
                    yield event
        except ConnectionClosed as err:
            if self._ws is None:
                return  # we closed it
            raise ProviderConnectionError(
                f"ElevenLabs closed the conversation ({close_summary(err)})",
                vendor=self.id,
                call_id=self.config.call_id,
            ) from err
        if self._ws is None:
            return  # we closed it
        if ws.close_code in (1000, None):
            yield ConversationEnded(reason=ws.close_reason or "")
            return
        raise ProviderConnectionError(
            f"ElevenLabs closed the conversation (code {ws.close_code}: {ws.close_reason})",
            vendor=self.id,
            call_id=self.config.call_id,
        )

    async def _map(self, message: dict) -> list[ProviderEvent]:
        kind = message.get("type")
        if kind == "ping":
            await self._pong(message)
            return []
        return list(self._events_of(kind, message))

    async def _pong(self, message: dict) -> None:
        ping = message.get("ping_event") or {}
        try:
            await self._send({"type": "pong", "event_id": ping.get("event_id")})
        except VoiceAgentsError as err:
            logger.debug("call %s: cannot answer a ping: %s", self.config.call_id, err)

    def _events_of(self, kind: Any, message: dict) -> Iterator[ProviderEvent]:
        if kind == "audio":
            yield from self._audio(message)
        elif kind == "agent_response":
            text = (message.get("agent_response_event") or {}).get("agent_response", "")
            if self._turn and self._turn_has_text:
                yield from self._finish_turn()
            if not self._turn:
                yield self._start_turn(None, message)
            self._turn_has_text = True
            yield AgentTranscript(self._turn, str(text), raw=message)
        elif kind == "agent_response_correction":
            event = message.get("agent_response_correction_event") or {}
            turn = self._last_cut_turn or self._turn or self._last_turn
            if turn:
                text = str(event.get("corrected_agent_response", ""))
                yield AgentTranscript(turn, text, corrected=True, raw=message)
        elif kind == "agent_response_complete":
            yield from self._finish_turn()
        elif kind == "interruption":
            event_id = _int((message.get("interruption_event") or {}).get("event_id"))
            if event_id is not None:
                self._interrupted_event_id = max(self._interrupted_event_id, event_id)
            self._last_cut_turn = (
                self._turn_of_event.get(event_id, "") or self._turn or self._last_turn
            )
            self._caller_turns += 1
            self._caller_turn = f"{self.turn_prefix}c{self._caller_turns}"
            yield CallerSpeechStarted(self._caller_turn, raw=message)
            if self._turn:
                yield from self._finish_turn(cancelled=True)
        elif kind == "user_transcript":
            text = (message.get("user_transcription_event") or {}).get("user_transcript", "")
            yield from self._finish_turn()
            if not self._caller_turn:
                self._caller_turns += 1
                self._caller_turn = f"{self.turn_prefix}c{self._caller_turns}"
            yield CallerTranscript(self._caller_turn, str(text), raw=message)
            self._caller_turn = ""
        elif kind == "client_tool_call":
            call = message.get("client_tool_call") or {}
            yield ToolCall(
                str(call.get("tool_call_id", "")),
                str(call.get("tool_name", "")),
                json.dumps(call.get("parameters") or {}),
                raw=message,
            )
        elif kind in ("error", "client_error"):
            # Not described by ElevenLabs' SDK types: read whatever message it carries.
            event = message.get("error_event") or message.get("client_error_event") or message
            yield ProviderErrorEvent(
                str(event.get("message") or event.get("error") or json.dumps(event)[:300]),
                code=str(event.get("code") or kind),
                fatal=kind == "error",
                raw=message,
            )

    def _audio(self, message: dict) -> Iterator[ProviderEvent]:
        event = message.get("audio_event") or {}
        event_id = _int(event.get("event_id"))
        if event_id is not None and event_id <= self._interrupted_event_id:
            return  # the rest of an utterance the caller cut off
        if self._turn and event_id is not None and self._turn_event_id is not None:
            if event_id > self._turn_event_id:
                yield from self._finish_turn()  # the next utterance
        if not self._turn:
            yield self._start_turn(event_id, message)
        elif self._turn_event_id is None:
            self._turn_event_id = event_id
        if event_id is not None:
            self._turn_of_event[event_id] = self._turn
        yield AgentAudio(self._turn, str(event.get("audio_base_64", "")), raw=message)

    def _start_turn(self, event_id: int | None, message: dict) -> AgentTurnStarted:
        self._turns += 1
        self._turn = self._last_turn = f"{self.turn_prefix}a{self._turns}"
        self._turn_event_id = event_id
        self._turn_has_text = False
        return AgentTurnStarted(self._turn, raw=message)

    def _finish_turn(self, *, cancelled: bool = False) -> Iterator[ProviderEvent]:
        if self._turn:
            yield AgentTurnFinished(self._turn, cancelled=cancelled)
        self._turn = ""
        self._turn_event_id = None
        self._turn_has_text = False


def history_prompt(history) -> str:
    """The conversation so far, appended to the prompt of a conversation reopened mid-call
    (ElevenLabs takes no earlier turns on a new conversation: the prompt is where they fit)."""
    if not history:
        return ""
    lines = "\n".join(
        f"{'Caller' if turn.role == 'caller' else 'You'}: {turn.text}" for turn in history
    )
    return (
        "\n\nThis phone call was cut off for a moment and has just been reconnected; "
        "do not greet the caller again. The conversation so far:\n" + lines
    )


def _parse(raw) -> dict | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return message if isinstance(message, dict) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _variable(value):
    """ElevenLabs dynamic variables are strings, numbers or booleans."""
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)
