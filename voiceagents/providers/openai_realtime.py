"""OpenAI Realtime (GA protocol; the events used are in docs/providers/openai_realtime.md): one
speech-to-speech WebSocket per call.

On a Twilio leg (μ-law 8 kHz) the session uses ``audio/pcmu`` both ways, so caller payloads go to
OpenAI and agent deltas go to the carrier as the very same base64 strings, never decoded. Other legs
(Telnyx L16) use ``audio/pcm`` at 24 kHz, which the session converts with the audio core. The option
``audio_format = "pcm"`` forces PCM on Twilio too.

Turn ids are OpenAI's item ids. Response ids stay here: the provider remembers the item and response
of the last audio it yielded, truncates that item on ``interrupt(heard_ms)``, and drops the late
audio deltas of responses it cancelled (or that OpenAI reports cancelled).

Only the GA shape is spoken: the beta shape (``OpenAI-Beta: realtime=v1``) was retired in 2026.
Beta event names are still accepted when parsing, defensively.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..audio.formats import MULAW_8K, PCM16_24K
from ..conf import get_setting
from ..exceptions import ProviderConnectionError, ProviderProtocolError
from ..transport.websocket import connect
from ..usage import realtime_token_usage
from .base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    PastTurn,
    ProviderCapabilities,
    ProviderErrorEvent,
    ProviderEvent,
    ToolCall,
)
from .options import deep_merged
from .socket import CLOSE_TIMEOUT, SocketProvider, close_summary

logger = logging.getLogger(__name__)

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
#: Error types that say our request was wrong (e.g. cancelling when nothing is active): the session
#: goes on. Anything else (server_error, rate limits on the session...) ends the call.
RECOVERABLE_ERROR_TYPES = frozenset({"invalid_request_error"})
#: Realtime events can carry up to 15 MiB of audio; keep a margin for the JSON around it.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

#: With ``turn_detection = "none"``.
WITHOUT_TURN_DETECTION = ProviderCapabilities(
    server_turn_detection=False, truncation=True, needs_local_vad=True
)

#: Added to the instructions of the reply that resumes a turn a noise cut off (``resume``): the
#: truncated item shows the model where the caller stopped hearing it.
RESUME_INSTRUCTIONS = (
    "A noise on the line cut you off; the caller did not say anything. Continue your last "
    "answer from the beginning of the sentence that was cut off, without repeating what came "
    "before it and without mentioning the interruption."
)

_AUDIO_DELTA = {"response.output_audio.delta", "response.audio.delta"}
_TRANSCRIPT_DONE = {"response.output_audio_transcript.done", "response.audio_transcript.done"}


class OpenAIRealtimeProvider(SocketProvider):
    id = "openai_realtime"
    name = "OpenAI Realtime"
    capabilities = ProviderCapabilities(server_turn_detection=True, truncation=True)

    def __init__(self, config):
        super().__init__(config)
        if config.options.get("turn_detection") == "none":
            # OpenAI then reports no caller speech: the session detects it, and we end the
            # caller's turn when it stops (local_speech).
            self.capabilities = WITHOUT_TURN_DETECTION
        # OpenAI ends a session after about an hour: the session renews it before then.
        self.capabilities = replace(
            self.capabilities,
            max_session_s=float(get_setting("OPENAI_REALTIME_MAX_SESSION", cast=float)),
        )
        # The item and response of the last audio yielded: what a barge-in interrupts.
        self._audio_item = ""
        self._audio_response = ""
        #: Responses whose audio deltas are dropped (cancelled by us or by OpenAI).
        self._cancelled: set[str] = set()
        # The message item of each response in progress, for its AgentTurnFinished.
        self._turn_of_response: dict[str, str] = {}
        #: The response in progress (response.created .. response.done), '' if none.
        self._in_progress = ""

    # -- connection ---------------------------------------------------------------------------

    def _url(self) -> str:
        base = self.config.base_url or DEFAULT_URL
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}{urlencode({'model': self.config.model})}"

    def _use_pcmu(self) -> bool:
        forced = self.config.options.get("audio_format")
        if forced:
            return forced == "pcmu"
        return self.config.carrier_format == MULAW_8K

    async def open(self) -> None:
        pcmu = self._use_pcmu()
        self.input_format = self.output_format = MULAW_8K if pcmu else PCM16_24K
        try:
            self._ws = await connect(
                self._url(),
                headers={"Authorization": f"Bearer {self.config.api_key}"},
                open_timeout=self.config.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                close_timeout=CLOSE_TIMEOUT,
            )
            created = json.loads(
                await asyncio.wait_for(self._ws.recv(), self.config.connect_timeout)
            )
        except InvalidStatus as err:
            status = err.response.status_code
            raise ProviderConnectionError(
                "OpenAI Realtime refused the connection"
                + (" (check the API key)" if status in (401, 403) else ""),
                vendor=self.id,
                call_id=self.config.call_id,
                status_code=status,
                response=err.response.body,
            ) from err
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as err:
            await self._close_quietly()
            raise ProviderConnectionError(
                "cannot reach OpenAI Realtime", vendor=self.id, call_id=self.config.call_id
            ) from err
        if created.get("type") != "session.created":
            await self._close_quietly()
            raise ProviderProtocolError(
                f"expected session.created, got {created.get('type')!r}",
                vendor=self.id,
                call_id=self.config.call_id,
                response=json.dumps(created)[:300],
            )
        self.session_id = str((created.get("session") or {}).get("id") or "")
        logger.debug("call %s: OpenAI Realtime session %s", self.config.call_id, self.session_id)
        await self._send({"type": "session.update", "session": self.session_config(pcmu)})
        for turn in self.past_turns:
            await self._send(history_item(turn))

    def session_config(self, pcmu: bool) -> dict:
        options = self.config.options
        audio_format = {"type": "audio/pcmu"} if pcmu else {"type": "audio/pcm", "rate": 24000}
        session: dict = {
            "type": "realtime",
            "instructions": self.config.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": audio_format,
                    "transcription": {
                        "model": options.get("transcription_model", DEFAULT_TRANSCRIPTION_MODEL),
                        # Transcription wants ISO-639-1: the primary subtag of the BCP-47 tag.
                        "language": self.config.language.split("-")[0].lower(),
                    },
                    "turn_detection": _turn_detection(options.get("turn_detection", "server_vad")),
                },
                "output": {"format": audio_format, "voice": self.config.voice},
            },
        }
        tools = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            }
            for tool in self.config.tools
        ] + list(options.get("tools") or ())
        if tools:
            session["tools"] = tools
        if "max_output_tokens" in options:
            session["max_output_tokens"] = options["max_output_tokens"]
        return deep_merged(session, options.get("session") or {})

    # -- sending -------------------------------------------------------------------------------

    async def send_audio(self, payload_b64: str) -> None:
        # Base64 needs no JSON escaping: build the frame without json.dumps (hot path).
        await self._send_text('{"type":"input_audio_buffer.append","audio":"' + payload_b64 + '"}')

    async def say(self, text: str) -> None:
        await self._send(
            {
                "type": "response.create",
                "response": {
                    "instructions": "Say exactly the following to the caller, word for word, "
                    f"and nothing else: {text}"
                },
            }
        )

    async def interrupt(self, heard_ms: int) -> None:
        """Truncate the item whose audio was playing to what was heard, drop the rest of
        its response's audio, and cancel that response if the server won't."""
        item, response = self._audio_item, self._audio_response
        if response:
            self._cancelled.add(response)
        if item:
            await self._send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item,
                    "content_index": 0,
                    "audio_end_ms": max(0, int(heard_ms)),
                }
            )
        if not self._server_cancels_on_speech():
            await self.cancel_response()

    async def resume(self) -> bool:
        """A noise cut the agent off: ask the model to go on from where it was cut.

        The truncate already told the model exactly what the caller heard, so it can pick up at
        that sentence. A reply the server began for the noise itself (``create_response``
        commits it as a turn) is cancelled first: the session only resumes while nothing of such
        a reply has reached the caller. The answer comes as a new turn."""
        if self._in_progress and self._in_progress not in self._cancelled:
            self._cancelled.add(self._in_progress)
            await self.cancel_response()
        instructions = self.config.instructions
        await self._send(
            {
                "type": "response.create",
                "response": {
                    "instructions": f"{instructions}\n\n{RESUME_INSTRUCTIONS}"
                    if instructions
                    else RESUME_INSTRUCTIONS
                },
            }
        )
        return True

    def _server_cancels_on_speech(self) -> bool:
        """With VAD and interrupt_response on (our default), OpenAI cancels the reply itself."""
        detection = self.session_config(True)["audio"]["input"]["turn_detection"]
        return bool(detection) and detection.get("interrupt_response", True)

    async def local_speech(self, event: CallerSpeechStarted | CallerSpeechStopped) -> None:
        """Turn detection off: the caller stopped talking, so commit their audio and reply."""
        if isinstance(event, CallerSpeechStopped):
            await self._send({"type": "input_audio_buffer.commit"})
            await self._send({"type": "response.create"})

    async def cancel_response(self) -> None:
        await self._send({"type": "response.cancel"})

    async def send_dtmf(self, digit: str) -> None:
        await self._send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": f"The caller pressed the key {digit} on their keypad.",
                        }
                    ],
                },
            }
        )
        await self._send({"type": "response.create"})

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        """The function's output goes into the conversation, then the model answers (an error
        is an output too: the model reads it and tells the caller)."""
        await self._send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": json.dumps({"error": output}) if is_error else output,
                },
            }
        )
        await self._send({"type": "response.create"})

    # -- receiving -----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ProviderEvent]:
        ws = self._connected_ws()
        try:
            async for message in ws:
                try:
                    event = json.loads(message)
                except (TypeError, ValueError):
                    logger.warning(
                        "call %s: OpenAI sent a frame that is not JSON", self.config.call_id
                    )
                    continue
                mapped = self._map(event)
                if mapped is not None:
                    yield mapped
        except ConnectionClosed as err:
            if self._ws is None:
                return  # we closed it
            raise ProviderConnectionError(
                f"OpenAI Realtime closed the connection ({close_summary(err)})",
                vendor=self.id,
                call_id=self.config.call_id,
            ) from err
        if self._ws is not None and ws.close_code not in (1000, None):
            raise ProviderConnectionError(
                f"OpenAI Realtime closed the connection (code {ws.close_code}: {ws.close_reason})",
                vendor=self.id,
                call_id=self.config.call_id,
            )

    def _map(self, event: dict) -> ProviderEvent | None:
        kind = event.get("type")
        if kind in _AUDIO_DELTA:
            response = event.get("response_id", "")
            if response in self._cancelled:
                return None  # a late delta of a reply that was cut off: never played
            item = self._audio_item = event.get("item_id", "")
            self._audio_response = response
            return AgentAudio(item, event.get("delta", ""), raw=event)
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "message":
                self._turn_of_response[event.get("response_id", "")] = item.get("id", "")
                return AgentTurnStarted(item.get("id", ""), raw=event)
            return None
        if kind in _TRANSCRIPT_DONE:
            return AgentTranscript(event.get("item_id", ""), event.get("transcript", ""), raw=event)
        if kind == "response.created":
            self._in_progress = (event.get("response") or {}).get("id", "")
            return None
        if kind == "response.done":
            return self._response_done(event)
        if kind == "input_audio_buffer.speech_started":
            return CallerSpeechStarted(
                event.get("item_id", ""), event.get("audio_start_ms"), raw=event
            )
        if kind == "input_audio_buffer.speech_stopped":
            return CallerSpeechStopped(
                event.get("item_id", ""), event.get("audio_end_ms"), raw=event
            )
        if kind == "conversation.item.input_audio_transcription.completed":
            self._count_transcription(event.get("usage"))
            return CallerTranscript(
                event.get("item_id", ""), event.get("transcript", ""), raw=event
            )
        if kind == "response.function_call_arguments.done":
            return ToolCall(
                event.get("call_id", ""),
                event.get("name", ""),
                event.get("arguments", ""),
                raw=event,
            )
        if kind == "error":
            error = event.get("error") or {}
            return ProviderErrorEvent(
                error.get("message", "unknown error"),
                code=error.get("code") or error.get("type") or "",
                fatal=error.get("type") not in RECOVERABLE_ERROR_TYPES,
                raw=event,
            )
        return None

    def _count_transcription(self, usage) -> None:
        """The input transcription is billed apart, by tokens or by seconds of audio."""
        if not isinstance(usage, dict):
            return
        model = self.config.options.get("transcription_model", DEFAULT_TRANSCRIPTION_MODEL)
        if usage.get("type") == "duration":
            self.usage.add("openai_transcription", model, {"audio_seconds": usage.get("seconds")})
        else:
            details = usage.get("input_token_details") or {}
            self.usage.add(
                "openai_transcription",
                model,
                {
                    "input_text_tokens": details.get("text_tokens"),
                    "input_audio_tokens": details.get("audio_tokens")
                    if details
                    else usage.get("input_tokens"),
                    "output_text_tokens": usage.get("output_tokens"),
                },
            )

    def _response_done(self, event: dict) -> AgentTurnFinished:
        response = event.get("response") or {}
        if isinstance(response.get("usage"), dict):
            self.usage.add(
                "openai_realtime", self.config.model, realtime_token_usage(response["usage"])
            )
        response_id = response.get("id", "")
        if response_id == self._in_progress:
            self._in_progress = ""
        status = response.get("status", "")
        cancelled = status == "cancelled"
        if cancelled and response_id:
            self._cancelled.add(response_id)
        error = ""
        if status == "failed":
            details = response.get("status_details") or {}
            failure = details.get("error") if isinstance(details.get("error"), dict) else {}
            error = failure.get("message") or failure.get("code") or details.get("reason")
            error = str(error or "failed")
        return AgentTurnFinished(
            self._turn_of_response.pop(response_id, ""), cancelled, error, raw=event
        )


def history_item(turn: PastTurn) -> dict:
    """A past turn as a conversation item: how a new session learns what was said before."""
    caller = turn.role == "caller"
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user" if caller else "assistant",
            "content": [{"type": "input_text" if caller else "output_text", "text": turn.text}],
        },
    }


def _turn_detection(kind: str) -> dict | None:
    if kind == "none":
        return None
    return {"type": kind, "create_response": True, "interrupt_response": True}
