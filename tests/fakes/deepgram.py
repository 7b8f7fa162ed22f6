"""A loopback fake of Deepgram's live streaming endpoint ``/v1/listen`` (docs/stages/deepgram.md).

A real WebSocket server on 127.0.0.1, port 0. Before the upgrade it checks what Deepgram checks
and refuses the same way, with an HTTP error whose JSON body (also in the ``dg-error`` header)
holds ``err_code`` and ``err_msg``: 401 without ``Authorization: Token <key>``, 400 for an
unknown model or encoding or raw audio without a sample rate. Once open it records every binary
frame (audio) and text message (``KeepAlive``, ``CloseStream``...), closes with 1011 ``NET-0001``
when nothing arrives for ``idle_timeout`` seconds, and answers ``CloseStream`` like Deepgram:
the results still pending, then ``Metadata``, then a normal close (1000).

Tests script the server's side (``send_results``, ``speech_started``, ``utterance_end``,
``error``, ``close``, ``drop``), or let it transcribe: after ``transcribe_next(text)``, the next
burst of non-silent audio yields ``SpeechStarted`` at its onset, an interim result after 100 ms
of speech, and a final ``speech_final`` result with ``text`` once the stream's ``endpointing``
silence (300 ms by default) follows. Times come from the audio received, not the clock, so the
events do not depend on how fast the test sends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

#: Raw encodings Deepgram's ``encoding`` parameter takes.
ENCODINGS = frozenset(
    {"linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus"}
    | {"speex", "g729"}
)
MODELS = frozenset({"nova-3", "nova-2", "nova-3-general", "nova-2-phonecall", "enhanced", "base"})
#: The reason Deepgram gives when it closes an idle stream.
NET_0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
#: μ-law bytes that decode to (nearly) zero: +0 and -0.
_MULAW_SILENCE = (0xFF, 0x7F)
#: PCM16 samples at or under this magnitude count as silence.
_PCM_SILENCE = 500
#: Speech before the auto mode's interim result, in ms of audio.
INTERIM_AFTER_MS = 100


@dataclass
class Utterance:
    """What the auto mode says for the next burst of caller speech."""

    text: str
    #: False: the final result is not ``speech_final``; ``UtteranceEnd`` follows instead, once
    #: ``utterance_end_ms`` of silence has passed (a noisy line where endpointing never fires).
    speech_final: bool = True


@dataclass
class Stream:
    connection: ServerConnection
    headers: Headers
    path: str
    request_id: str
    #: Query parameters, first value of each; ``param_lists`` has them all (repeated keys).
    params: dict[str, str]
    param_lists: dict[str, list[str]]
    #: Binary frames as received, in order.
    frames: list[bytes] = field(default_factory=list)
    #: Text messages as received (raw strings).
    texts: list[str] = field(default_factory=list)
    #: Set when CloseStream arrives.
    close_requested: bool = False
    # The auto mode's state, in ms of audio received.
    audio_ms: float = 0.0
    speaking: Utterance | None = None
    onset_ms: float = 0.0
    voiced_until_ms: float = 0.0
    interim_sent: bool = False
    #: The end of a final that was not speech_final: UtteranceEnd is owed after the gap.
    utterance_end_due: float | None = None
    idle_task: asyncio.Task | None = None
    last_received: float = 0.0

    @property
    def audio(self) -> bytes:
        return b"".join(self.frames)

    def messages(self, kind: str | None = None) -> list[dict]:
        """Text messages that parse as JSON objects, optionally of one ``type``."""
        parsed = []
        for text in self.texts:
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if isinstance(message, dict) and (kind is None or message.get("type") == kind):
                parsed.append(message)
        return parsed


class FakeDeepgram:
    """``async with FakeDeepgram() as fake:``; ``fake.url`` is the ``/v1/listen`` URL."""

    def __init__(self, api_key: str = "dg-test-key", *, idle_timeout: float = 10.0):
        self.api_key = api_key
        #: Seconds without any message before the stream is closed with 1011 NET-0001.
        self.idle_timeout = idle_timeout
        #: False: CloseStream is recorded but never answered (a stuck server).
        self.answer_close_stream = True
        self.streams: list[Stream] = []
        #: Handshakes refused: (status, query params).
        self.refused: list[tuple[int, dict[str, str]]] = []
        self.utterances: list[Utterance] = []
        self.connected = asyncio.Event()
        self.url = ""
        self._server = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> FakeDeepgram:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check_request,
            process_response=self._add_request_id,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/listen"
        return self

    async def __aexit__(self, *exc) -> None:
        for stream in self.streams:
            if stream.idle_task is not None:
                stream.idle_task.cancel()
        self._server.close()
        await self._server.wait_closed()

    # -- the test's view ----------------------------------------------------------------------

    @property
    def stream(self) -> Stream:
        return self.streams[-1]

    async def wait_for(self, predicate, timeout: float = 5.0):
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                await asyncio.sleep(0.005)
        return result

    def transcribe_next(self, text: str, *, speech_final: bool = True) -> None:
        """The next burst of non-silent caller audio is transcribed as ``text``."""
        self.utterances.append(Utterance(text, speech_final))

    async def send(self, message: dict) -> None:
        await self.stream.connection.send(json.dumps(message))

    async def send_results(
        self,
        text: str,
        *,
        is_final: bool = True,
        speech_final: bool = False,
        start: float = 0.0,
        duration: float = 1.0,
    ) -> None:
        await self.send(_results(self.stream, text, is_final, speech_final, start, duration))

    async def speech_started(self, timestamp: float) -> None:
        await self.send({"type": "SpeechStarted", "channel": [0, 1], "timestamp": timestamp})

    async def utterance_end(self, last_word_end: float) -> None:
        await self.send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_word_end})

    async def error(
        self, description: str, *, variant: str = "SchemaError", message: str = ""
    ) -> None:
        await self.send(
            {"type": "Error", "variant": variant, "description": description, "message": message}
        )

    async def close(self, code: int = 1011, reason: str = "") -> None:
        await self.stream.connection.close(code, reason)

    async def drop(self) -> None:
        """Abort the TCP connection with no close frame."""
        self.stream.connection.transport.abort()

    # -- the handshake -------------------------------------------------------------------------

    def _check_request(self, connection, request):
        lists = parse_qs(urlsplit(request.path).query)
        params = {key: values[0] for key, values in lists.items()}
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return self._refuse(401, "INVALID_AUTH", "Invalid credentials.", params)
        encoding = params.get("encoding")
        if encoding is not None and encoding not in ENCODINGS:
            return self._refuse(400, "Bad Request", f"Invalid encoding: {encoding}.", params)
        if encoding is not None and "sample_rate" not in params:
            return self._refuse(
                400, "Bad Request", "sample_rate is required for raw encodings.", params
            )
        if params.get("model", "base") not in MODELS:
            return self._refuse(
                400, "Bad Request", "No such model/language/tier combination found.", params
            )
        return None

    def _refuse(self, status: int, code: str, message: str, params: dict) -> Response:
        self.refused.append((status, params))
        request_id = str(uuid.uuid4())
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": request_id})
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("dg-request-id", request_id),
                ("dg-error", body),
            ]
        )
        reason = {400: "Bad Request", 401: "Unauthorized"}.get(status, "Error")
        return Response(status, reason, headers, body.encode())

    def _add_request_id(self, connection, request, response):
        connection.dg_request_id = str(uuid.uuid4())
        response.headers["dg-request-id"] = connection.dg_request_id
        return response

    # -- the stream ----------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        lists = parse_qs(urlsplit(request.path).query)
        stream = Stream(
            connection,
            request.headers,
            request.path,
            connection.dg_request_id,
            {key: values[0] for key, values in lists.items()},
            lists,
        )
        loop = asyncio.get_running_loop()
        stream.last_received = loop.time()
        stream.idle_task = asyncio.create_task(self._watch_idle(stream))
        self.streams.append(stream)
        self.connected.set()
        try:
            async for message in connection:
                stream.last_received = loop.time()
                if isinstance(message, bytes):
                    if not stream.close_requested:
                        stream.frames.append(message)
                        await self._hear(stream, message)
                else:
                    stream.texts.append(message)
                    await self._on_text(stream, message)
        except ConnectionClosed:
            pass
        finally:
            stream.idle_task.cancel()

    async def _watch_idle(self, stream: Stream) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = stream.last_received + self.idle_timeout - loop.time()
            if wait <= 0:
                await stream.connection.close(1011, NET_0001)
                return
            await asyncio.sleep(wait)

    async def _on_text(self, stream: Stream, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "KeepAlive":
            return
        if kind == "CloseStream":
            stream.close_requested = True
            if self.answer_close_stream:
                await self._finish(stream)
            return
        if kind == "Finalize":
            await self._flush(stream, from_finalize=True)
            return
        await stream.connection.send(
            json.dumps(
                {
                    "type": "Error",
                    "variant": "SchemaError",
                    "description": "Could not parse the client message.",
                    "message": text,
                }
            )
        )

    async def _finish(self, stream: Stream) -> None:
        """CloseStream: what is pending, then Metadata, then a normal close."""
        await self._flush(stream)
        await stream.connection.send(
            json.dumps(
                {
                    "type": "Metadata",
                    "transaction_key": "deprecated",
                    "request_id": stream.request_id,
                    "sha256": "",
                    "created": "2026-01-01T00:00:00.000Z",
                    "duration": round(stream.audio_ms / 1000, 3),
                    "channels": 1,
                }
            )
        )
        await stream.connection.close(1000)

    # -- the auto mode -------------------------------------------------------------------------

    async def _hear(self, stream: Stream, frame: bytes) -> None:
        """Follow the caller's speech in audio time and say what an utterance calls for."""
        voiced, frame_ms = _analyse(stream.params, frame)
        start_ms = stream.audio_ms
        end_ms = stream.audio_ms = start_ms + frame_ms
        if voiced:
            if stream.speaking is None:
                if not self.utterances:
                    return  # nothing scripted: this burst goes unheard
                stream.speaking = self.utterances.pop(0)
                stream.onset_ms, stream.interim_sent = start_ms, False
                stream.utterance_end_due = None
                await self.send_to(
                    stream,
                    {"type": "SpeechStarted", "channel": [0, 1], "timestamp": start_ms / 1000},
                )
            stream.voiced_until_ms = end_ms
            if not stream.interim_sent and end_ms - stream.onset_ms >= INTERIM_AFTER_MS:
                stream.interim_sent = True
                words = stream.speaking.text.split()
                partial = " ".join(words[: max(1, len(words) // 2)])
                await self._result(stream, partial, is_final=False, speech_final=False)
            return
        if stream.speaking is not None:
            if end_ms - stream.voiced_until_ms >= _param_ms(stream, "endpointing", 300):
                await self._flush(stream, speech_final=stream.speaking.speech_final)
        elif stream.utterance_end_due is not None:
            last_word_end = stream.utterance_end_due
            if end_ms - last_word_end >= _param_ms(stream, "utterance_end_ms", 1000):
                stream.utterance_end_due = None
                await self.send_to(
                    stream,
                    {
                        "type": "UtteranceEnd",
                        "channel": [0, 1],
                        "last_word_end": last_word_end / 1000,
                    },
                )

    async def _flush(
        self, stream: Stream, *, speech_final: bool = False, from_finalize: bool = False
    ) -> None:
        """The utterance in progress (if any) as a final result."""
        utterance, stream.speaking = stream.speaking, None
        if utterance is None:
            return
        await self._result(
            stream,
            utterance.text,
            is_final=True,
            speech_final=speech_final,
            from_finalize=from_finalize,
        )
        if not speech_final and "utterance_end_ms" in stream.params:
            stream.utterance_end_due = stream.voiced_until_ms

    async def _result(self, stream: Stream, text: str, **flags) -> None:
        start = stream.onset_ms / 1000
        duration = (stream.voiced_until_ms - stream.onset_ms) / 1000
        from_finalize = flags.pop("from_finalize", False)
        message = _results(stream, text, flags["is_final"], flags["speech_final"], start, duration)
        message["from_finalize"] = from_finalize
        await self.send_to(stream, message)

    async def send_to(self, stream: Stream, message: dict) -> None:
        try:
            await stream.connection.send(json.dumps(message))
        except ConnectionClosed:
            pass


def _results(
    stream: Stream, text: str, is_final: bool, speech_final: bool, start: float, duration: float
) -> dict:
    """A ``Results`` message shaped like Deepgram's, words spread evenly over the span."""
    words = text.split()
    step = duration / len(words) if words else 0.0
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(duration, 3),
        "start": round(start, 3),
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": False,
        "channel": {
            "alternatives": [
                {
                    "transcript": text,
                    "confidence": 0.98,
                    "words": [
                        {
                            "word": word.lower().strip(".,?!"),
                            "start": round(start + i * step, 3),
                            "end": round(start + (i + 1) * step, 3),
                            "confidence": 0.98,
                            "punctuated_word": word,
                        }
                        for i, word in enumerate(words)
                    ],
                }
            ]
        },
        "metadata": {
            "request_id": stream.request_id,
            "model_uuid": "00000000-0000-0000-0000-000000000000",
            "model_info": {
                "name": "general-" + stream.params.get("model", "base"),
                "version": "fake",
                "arch": stream.params.get("model", "base"),
            },
        },
    }


def _analyse(params: dict[str, str], frame: bytes) -> tuple[bool, float]:
    """Whether a frame is speech (at least half its samples are not silent), and its length
    in ms, for the stream's declared encoding."""
    rate = int(params.get("sample_rate") or 8000)
    if params.get("encoding") == "linear16":
        samples = np.frombuffer(frame[: len(frame) // 2 * 2], dtype="<i2")
        loud = int(np.count_nonzero(np.abs(samples.astype(np.int32)) > _PCM_SILENCE))
    else:
        samples = np.frombuffer(frame, dtype=np.uint8)
        loud = int(np.count_nonzero(~np.isin(samples, _MULAW_SILENCE)))
    count = len(samples)
    return (count > 0 and loud * 2 >= count), count * 1000 / rate


def _param_ms(stream: Stream, name: str, default: int) -> int:
    try:
        return int(stream.params[name])
    except (KeyError, ValueError):
        return default
