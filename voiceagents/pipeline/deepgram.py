"""Deepgram live streaming speech-to-text (``/v1/listen``; docs/stages/deepgram.md): one
WebSocket per call.

Caller audio goes out as binary frames in the carrier's own format when Deepgram takes it (μ-law
8 kHz: Twilio payloads are sent as decoded, never converted), else as 16 kHz linear16 made by the
call's converter. Deepgram answers with JSON text frames: interim and final ``Results``,
``SpeechStarted`` at voice onset, ``UtteranceEnd`` after a gap, ``Metadata`` at the end.

Deepgram closes a stream that receives nothing for 10 seconds, so a timer sends ``KeepAlive``
text frames whenever no audio went out for ``KEEPALIVE_INTERVAL`` seconds (a carrier may pause
its media). ``close`` ends the stream the graceful way: ``CloseStream``, then the server sends
its last results and ``Metadata`` and closes the socket itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import CLOSED, OPEN

from ..audio.formats import MULAW_8K, PCM16_16K
from ..exceptions import ProviderAPIError, ProviderConnectionError
from ..transport.websocket import WebSocketConnection, connect
from .base import SpeechStarted, SpeechToText, SttEvent, Transcript, UtteranceEnd

logger = logging.getLogger(__name__)

DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
DEFAULT_MODEL = "nova-3"
#: Silence (ms) after which Deepgram marks a final result ``speech_final``: the end of a turn.
#: Deepgram's own default (10 ms) is meant for dictation; conversation wants a few hundred.
DEFAULT_ENDPOINTING_MS = 300
#: Gap (ms) after the last final word that yields ``UtteranceEnd``, the backup end of turn on
#: noisy lines where ``speech_final`` never comes. Deepgram recommends 1000 or more.
UTTERANCE_END_MS = 1000
#: Seconds without audio before a ``KeepAlive`` goes out; Deepgram gives up after 10.
KEEPALIVE_INTERVAL = 4.0
#: Seconds ``close`` waits for Deepgram's last results and its own close after ``CloseStream``.
CLOSE_TIMEOUT = 2.0
#: Results are small JSON messages; this only guards against a runaway peer.
MAX_MESSAGE_BYTES = 1024 * 1024

#: Query parameters that describe the bytes we send: ours alone, never taken from options.
_FORMAT_PARAMS = frozenset({"encoding", "sample_rate", "channels"})
_KEEPALIVE = '{"type": "KeepAlive"}'
_CLOSE_STREAM = '{"type": "CloseStream"}'


class DeepgramSTT(SpeechToText):
    id = "deepgram"
    name = "Deepgram"

    def __init__(
        self,
        config,
        context,
        *,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        close_timeout: float = CLOSE_TIMEOUT,
    ):
        super().__init__(config, context)
        self.keepalive_interval = keepalive_interval
        self.close_timeout = close_timeout
        self._ws: WebSocketConnection | None = None
        self._keepalive: asyncio.Task | None = None
        #: Set by ``close``: audio is dropped from then on and the server's close is expected.
        self._closing = False
        #: Loop time of the last frame sent (audio or KeepAlive), read by the keep-alive timer.
        self._last_sent = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection ---------------------------------------------------------------------------

    def query(self) -> dict[str, Any]:
        """The ``/v1/listen`` query parameters, in Deepgram's spelling (booleans as words)."""
        options = self.context.options
        if self.context.carrier_format == MULAW_8K:
            audio = {"encoding": "mulaw", "sample_rate": 8000}
        else:
            audio = {"encoding": "linear16", "sample_rate": 16000}
        endpointing = options.get("endpointing_ms")
        params: dict[str, Any] = {
            "model": self.config.model or DEFAULT_MODEL,
            **audio,
            "channels": 1,
            "language": self.config.language,
            "interim_results": True,
            "endpointing": DEFAULT_ENDPOINTING_MS if endpointing is None else endpointing,
            "utterance_end_ms": UTTERANCE_END_MS,
            "vad_events": True,
            "punctuate": True,
            "smart_format": True,
        }
        extra = options.get("stt_options") or {}
        ignored = sorted(_FORMAT_PARAMS.intersection(extra))
        if ignored:
            logger.warning(
                "call %s: stt_options %s ignored: the audio format follows the carrier",
                self.context.call_id,
                ", ".join(ignored),
            )
        for key, value in extra.items():
            if key not in _FORMAT_PARAMS:
                params[key] = value
        # None (an option set to null) or an empty language leaves the parameter out, so
        # Deepgram's own default applies.
        return {
            key: _query_value(value) for key, value in params.items() if value not in ("", None)
        }

    def url(self) -> str:
        base = self.config.base_url or DEFAULT_URL
        separator = "&" if "?" in base else "?"
        # doseq: a list option (keyterm=[...]) becomes a repeated parameter, as Deepgram wants.
        return base + separator + urlencode(self.query(), doseq=True)

    async def open(self) -> None:
        pcm = self.context.carrier_format != MULAW_8K
        self.input_format = PCM16_16K if pcm else MULAW_8K
        try:
            self._ws = await connect(
                self.url(),
                headers={"Authorization": f"Token {self.config.api_key}"},
                open_timeout=self.context.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                close_timeout=self.close_timeout,
            )
        except InvalidStatus as err:
            raise self._refusal(err) from err
        except (OSError, InvalidHandshake, TimeoutError) as err:
            raise ProviderConnectionError(
                "cannot reach Deepgram", vendor=self.id, call_id=self.context.call_id
            ) from err
        response = self._ws.response
        if response is not None:
            # Deepgram support asks for this id.
            logger.debug(
                "call %s: Deepgram request %s",
                self.context.call_id,
                response.headers.get("dg-request-id", "?"),
            )
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._loop.time()
        self._keepalive = asyncio.create_task(self._keep_alive(self._ws))

    def _refusal(self, err: InvalidStatus) -> ProviderAPIError:
        """Deepgram refuses before the upgrade with an HTTP error: the JSON body (also in the
        ``dg-error`` header) holds ``err_code`` and ``err_msg``."""
        response = err.response
        status = response.status_code
        body = response.body or response.headers.get("dg-error", "").encode()
        try:
            details = json.loads(body)
        except ValueError:
            details = {}
        message = ""
        if isinstance(details, dict):
            message = str(details.get("err_msg") or details.get("err_code") or "")
        if not message:
            message = body.decode("utf-8", "replace").strip() or response.reason_phrase
        hint = " (check the API key)" if status in (401, 403) else ""
        return ProviderAPIError(
            f"Deepgram refused the stream: {message}{hint}",
            vendor=self.id,
            call_id=self.context.call_id,
            status_code=status,
            response=body,
        )

    # -- sending -------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> None:
        if self._closing:
            return  # CloseStream is sent or on its way: Deepgram wants nothing after it
        ws = self._ws
        if ws is None:
            raise ProviderConnectionError(
                "not connected", vendor=self.id, call_id=self.context.call_id
            )
        try:
            if ws.writing_paused:
                await ws.send(audio)  # the socket is backed up: wait for it to drain
            else:
                ws.write(audio)  # the hot path (50 frames/s): no await, straight to the socket
        except ConnectionClosed as err:
            raise ProviderConnectionError(
                "Deepgram connection closed", vendor=self.id, call_id=self.context.call_id
            ) from err
        self._last_sent = self._loop.time()

    async def _keep_alive(self, ws: WebSocketConnection) -> None:
        """Send ``KeepAlive`` whenever ``keepalive_interval`` passes with nothing sent."""
        loop = asyncio.get_running_loop()
        interval = self.keepalive_interval
        try:
            while True:
                await asyncio.sleep(max(0.0, self._last_sent + interval - loop.time()))
                if self._closing:
                    return
                if loop.time() - self._last_sent >= interval:
                    # A text frame: Deepgram counts a binary one as (undecodable) audio.
                    await ws.send(_KEEPALIVE)
                    self._last_sent = loop.time()
        except ConnectionClosed:
            pass  # events() reports the close

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.cancel()
        ws = self._ws
        if ws is None:
            return
        try:
            if ws.state is OPEN:
                ws.write(_CLOSE_STREAM)
                # Deepgram flushes its last results and Metadata, then closes the socket. Those
                # messages wait in the connection for events(), which may still read them. The
                # connection has no way to await the peer's close short of closing it ourselves
                # (which would cut the flush short): poll its state, only here at teardown.
                async with asyncio.timeout(self.close_timeout):
                    while ws.state is not CLOSED:
                        await asyncio.sleep(0.01)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            try:
                # close() is bounded by the connection's close_timeout; wait_for is a safety net.
                await asyncio.wait_for(ws.close(), self.close_timeout + 1)
            except (TimeoutError, OSError, ConnectionClosed):
                pass
            self._ws = None

    # -- receiving -----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SttEvent]:
        ws = self._ws
        if ws is None:
            if self._closing:
                return
            raise ProviderConnectionError(
                "not connected", vendor=self.id, call_id=self.context.call_id
            )
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue  # Deepgram sends JSON text only
                try:
                    data = json.loads(message)
                except ValueError:
                    logger.warning(
                        "call %s: Deepgram sent a frame that is not JSON", self.context.call_id
                    )
                    continue
                if not isinstance(data, dict):
                    continue
                event = self._map(data)
                if event is not None:
                    yield event
        except ConnectionClosed:
            pass  # an abnormal close: judged below, like a normal one
        if not self._closing:
            # Deepgram names its errors in the close reason (NET-0001: idle; DATA-0000: audio
            # it cannot decode; NET-0000: its own failure).
            reason = ws.close_reason or "no reason"
            raise ProviderConnectionError(
                f"Deepgram closed the stream (code {ws.close_code}: {reason})",
                vendor=self.id,
                call_id=self.context.call_id,
            )

    def _map(self, data: Mapping[str, Any]) -> SttEvent | None:
        kind = data.get("type")
        if kind == "Results":
            return self._results(data)
        if kind == "SpeechStarted":
            return SpeechStarted(_ms(data.get("timestamp")), raw=data)
        if kind == "UtteranceEnd":
            return UtteranceEnd(_ms(data.get("last_word_end")), raw=data)
        if kind == "Metadata":
            logger.debug(
                "call %s: Deepgram metadata, request %s, %s s of audio",
                self.context.call_id,
                data.get("request_id"),
                data.get("duration"),
            )
            return None
        if kind == "Error":
            description = data.get("description") or data.get("message") or "unknown error"
            raise ProviderAPIError(
                f"Deepgram error: {description}",
                vendor=self.id,
                call_id=self.context.call_id,
                response=json.dumps(data),
                variant=data.get("variant"),
            )
        return None  # ConfigureSuccess and the like: nothing the call needs

    def _results(self, data: Mapping[str, Any]) -> SttEvent | None:
        alternatives = (data.get("channel") or {}).get("alternatives") or [{}]
        text = (alternatives[0].get("transcript") or "").strip()
        start = data.get("start")
        duration = data.get("duration")
        end = None if start is None or duration is None else start + duration
        final = bool(data.get("is_final"))
        speech_final = bool(data.get("speech_final"))
        if not text:
            if final and speech_final:
                # Endpointing fired on a span with no words: the turn is over with the finals
                # received before it.
                return UtteranceEnd(_ms(end), raw=data)
            return None  # silence
        return Transcript(
            text,
            final=final,
            end_of_turn=final and speech_final,
            audio_start_ms=_ms(start),
            audio_end_ms=_ms(end),
            raw=data,
        )


def _query_value(value: Any) -> Any:
    """Deepgram's spelling of a query value: ``true``/``false`` for booleans; lists itemwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [_query_value(item) for item in value]
    return str(value)


def _ms(seconds: Any) -> int | None:
    """Deepgram's times are seconds (floats) into the audio sent."""
    if seconds is None:
        return None
    try:
        return round(float(seconds) * 1000)
    except (TypeError, ValueError):
        return None
