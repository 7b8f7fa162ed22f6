"""A fake of OpenAI's audio REST API for tests: text-to-speech and transcription.

``FakeOpenAIAudio`` is a real HTTP/1.1 server on 127.0.0.1, port 0, in a thread. It answers like
OpenAI does (docs/stages/openai_tts.md, docs/stages/whisper.md):

* every request needs ``Authorization: Bearer <key>``; a wrong or missing key is ``401`` with
  OpenAI's error object (``invalid_api_key``);
* ``POST /v1/audio/speech`` takes the JSON body and streams raw PCM16 LE, 24 kHz, mono with
  chunked transfer encoding: a 1 kHz sine, ``ms_per_char`` milliseconds per input character, in
  chunks of ``chunk_size`` bytes (odd by default, so chunks split samples as OpenAI's may) with
  ``chunk_delay`` seconds between them. A client that goes away mid-stream is recorded
  (``SpeechRequest.disconnected``);
* ``POST /v1/audio/transcriptions`` parses the multipart body with the standard library's
  ``email`` parser, records the form fields and the WAV's parameters, and answers
  ``{"text": ...}`` with the next text of ``transcripts`` (default ``utterance N``), after the
  next entry of ``delays`` if any (seconds, or a ``threading.Event`` to wait for);
* ``GET /v1/models`` lists ``models`` as OpenAI does (``{"object": "list", "data": [...]}``),
  the request a key check makes.

``fail_next`` and ``drop_next`` script vendor errors and dropped connections.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import numpy as np

from tests.fakes.http_fake import ThreadedHTTPFake

API_KEY = "sk-test-openai-0123456789abcdef"
SPEECH_RATE = 24000
TONE_HZ = 1000
TONE_AMPLITUDE = 8000
MAX_SPEECH_INPUT = 4096

#: What ``GET /v1/models`` lists.
MODELS = ("gpt-realtime", "gpt-realtime-mini", "gpt-4o-mini", "gpt-4o-mini-tts", "whisper-1")

INVALID_KEY = {
    "error": {
        "message": "Incorrect API key provided: sk-wrong. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


def openai_error(message: str, *, param: str | None = None, code: str | None = None) -> dict:
    """An OpenAI error body (``invalid_request_error``)."""
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def speech_pcm(text: str, ms_per_char: float) -> bytes:
    """The audio the fake speaks for ``text``: a 1 kHz sine, PCM16 LE at 24 kHz."""
    n = np.arange(round(len(text) * ms_per_char * SPEECH_RATE / 1000))
    wave_ = np.rint(TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * n / SPEECH_RATE))
    return wave_.astype("<i2").tobytes()


@dataclass
class SpeechRequest:
    headers: dict[str, str]
    json: object
    #: Bytes of audio written to the socket before the stream ended.
    sent: int = 0
    #: The whole body was sent.
    finished: bool = False
    #: The client closed the connection before the end of the body.
    disconnected: bool = False
    #: Set once the stream is over, either way.
    done: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class TranscriptionRequest:
    headers: dict[str, str]
    #: Form fields other than ``file`` (the last value of a repeated field).
    fields: dict[str, str]
    filename: str = ""
    content_type: str = ""
    #: The uploaded file as sent.
    file: bytes = b""
    #: WAV parameters of ``file`` (0 when it is not a WAV).
    rate: int = 0
    channels: int = 0
    sample_width: int = 0
    frames: int = 0
    #: The PCM frames of the WAV.
    pcm: bytes = b""
    #: 1-based, in order of arrival.
    number: int = 0

    @property
    def duration(self) -> float:
        """Seconds of audio in the WAV."""
        return self.frames / self.rate if self.rate else 0.0


@dataclass
class _Script:
    status: int
    body: object = None  # status 0: close the connection without answering


class FakeOpenAIAudio(ThreadedHTTPFake):
    """``with FakeOpenAIAudio() as openai:`` then use ``openai.speech_url`` and
    ``openai.transcriptions_url`` as the stages' base URLs (``openai.url`` is the root)."""

    methods = ("POST", "GET")
    protocol_version = "HTTP/1.1"  # chunked bodies and keep-alive, as OpenAI answers

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        #: Speech audio per input character, in ms.
        self.ms_per_char = 40.0
        #: Bytes per chunk of a speech body; odd so that chunks split samples.
        self.chunk_size = 4801
        #: Seconds between speech chunks.
        self.chunk_delay = 0.0
        #: When set, a speech stream stops after its first chunk until the event is set.
        self.hold_after_first_chunk: threading.Event | None = None
        #: Speech streams are cut (no final chunk) after this many bytes, when not None.
        self.cut_speech_after: int | None = None
        #: Texts the next transcriptions answer, oldest first.
        self.transcripts: deque[str] = deque()
        #: Per transcription request, in order of arrival: seconds to wait, or an event to wait for.
        self.delays: deque[float | threading.Event] = deque()
        self.speech_requests: list[SpeechRequest] = []
        self.transcriptions: list[TranscriptionRequest] = []
        #: Numbers of the transcription requests in the order their answers were sent.
        self.answered: list[int] = []
        #: Every request's path, in order of arrival.
        self.paths: list[str] = []
        self._scripts: deque[_Script] = deque()
        self._lock = threading.Lock()

    @property
    def speech_url(self) -> str:
        return f"{self.url}/v1/audio/speech"

    @property
    def transcriptions_url(self) -> str:
        return f"{self.url}/v1/audio/transcriptions"

    def __exit__(self, *exc) -> None:
        # Let held streams and transcriptions finish so the server can shut down.
        if self.hold_after_first_chunk is not None:
            self.hold_after_first_chunk.set()
        for delay in self.delays:
            if isinstance(delay, threading.Event):
                delay.set()
        super().__exit__(*exc)

    # -- scripting --------------------------------------------------------------------------------

    def fail_next(self, status: int, body: object, *, times: int = 1) -> None:
        """The next ``times`` requests (after the key check) are answered ``status`` with ``body``."""
        with self._lock:
            self._scripts.extend(_Script(status, body) for _ in range(times))

    def drop_next(self, *, times: int = 1) -> None:
        """The next ``times`` requests get no answer: the connection is closed."""
        with self._lock:
            self._scripts.extend(_Script(0) for _ in range(times))

    def speech_pcm(self, text: str) -> bytes:
        """The exact audio a speech request for ``text`` streams."""
        return speech_pcm(text, self.ms_per_char)

    # -- server side ------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        path = urlsplit(request.path).path
        with self._lock:
            self.paths.append(path)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.answer_json(request, 401, INVALID_KEY)
            return
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
        if script is not None:
            if script.status == 0:
                request.close_connection = True
                request.connection.close()
            else:
                self.answer_json(request, script.status, script.body)
            return
        if request.command == "GET" and path == "/v1/models":
            self.answer_json(request, 200, {"object": "list", "data": [_model(m) for m in MODELS]})
        elif request.command == "GET":
            self.answer_json(
                request, 404, openai_error(f"Invalid URL (GET {path})", code="unknown_url")
            )
        elif path == "/v1/audio/speech":
            self._speech(request, raw)
        elif path == "/v1/audio/transcriptions":
            self._transcription(request, raw)
        else:
            self.answer_json(
                request, 404, openai_error(f"Invalid URL (POST {path})", code="unknown_url")
            )

    def _speech(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = SpeechRequest(dict(request.headers), body)
        with self._lock:
            self.speech_requests.append(record)
        error = _speech_error(body)
        if error:
            record.done.set()
            self.answer_json(request, 400, error)
            return
        audio = self.speech_pcm(body["input"])
        request.send_response(200)
        request.send_header("Content-Type", "audio/pcm")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        try:
            for offset in range(0, len(audio), self.chunk_size):
                if self.cut_speech_after is not None and offset >= self.cut_speech_after:
                    request.close_connection = True
                    request.connection.shutdown(2)
                    return
                chunk = audio[offset : offset + self.chunk_size]
                request.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                request.wfile.flush()
                record.sent += len(chunk)
                if offset == 0 and self.hold_after_first_chunk is not None:
                    self.hold_after_first_chunk.wait(10)
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
            request.wfile.write(b"0\r\n\r\n")
            request.wfile.flush()
            record.finished = True
        except OSError:  # BrokenPipeError, ConnectionResetError: the client went away
            record.disconnected = True
            request.close_connection = True
        finally:
            record.done.set()

    def _transcription(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        content_type = request.headers.get("Content-Type", "")
        parts = _multipart(content_type, raw)
        if parts is None:
            self.answer_json(
                request, 400, openai_error("Could not parse multipart form", code="invalid_form")
            )
            return
        record = TranscriptionRequest(dict(request.headers), {})
        for part in parts:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                record.filename = part.get_filename() or ""
                record.content_type = part.get_content_type()
                record.file = payload
            elif name:
                record.fields[name] = payload.decode("utf-8")
        _read_wav(record)
        error = _transcription_error(record)
        with self._lock:
            record.number = len(self.transcriptions) + 1
            self.transcriptions.append(record)
            if error is None:
                # Texts and delays go to requests in order of arrival.
                delay = self.delays.popleft() if self.delays else None
                text = (
                    self.transcripts.popleft() if self.transcripts else f"utterance {record.number}"
                )
        if error:
            self.answer_json(request, 400, error)
            return
        if isinstance(delay, threading.Event):
            delay.wait(10)
        elif delay:
            time.sleep(delay)
        # Counted before the answer leaves: a test that holds the answer then sees it counted.
        with self._lock:
            self.answered.append(record.number)
        self.answer_json(request, 200, {"text": text})


def _speech_error(body) -> dict | None:
    if not isinstance(body, dict):
        return openai_error("We could not parse the JSON body of your request.")
    for name in ("model", "input", "voice"):
        if not body.get(name):
            return openai_error(f"Missing required parameter: '{name}'.", param=name)
    if len(body["input"]) > MAX_SPEECH_INPUT:
        return openai_error(
            f"[{{'type': 'string_too_long', 'loc': ('body', 'input'), 'msg': 'String should have "
            f"at most {MAX_SPEECH_INPUT} characters'}}]",
            param="input",
            code="string_above_max_length",
        )
    if body.get("response_format") != "pcm":
        # OpenAI would send mp3 (or the asked format); the fake only makes raw PCM.
        return openai_error("the fake speaks only response_format 'pcm'", param="response_format")
    return None


def _multipart(content_type: str, raw: bytes):
    """The parts of a multipart/form-data body, or None if it is not one."""
    if not content_type.startswith("multipart/form-data"):
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        return None
    return list(message.iter_parts())


def _read_wav(record: TranscriptionRequest) -> None:
    try:
        with wave.open(io.BytesIO(record.file), "rb") as wav:
            record.rate = wav.getframerate()
            record.channels = wav.getnchannels()
            record.sample_width = wav.getsampwidth()
            record.frames = wav.getnframes()
            record.pcm = wav.readframes(record.frames)
    except (wave.Error, EOFError):
        pass


def _transcription_error(record: TranscriptionRequest) -> dict | None:
    if not record.file:
        return openai_error("Missing required parameter: 'file'.", param="file")
    if not record.fields.get("model"):
        return openai_error("Missing required parameter: 'model'.", param="model")
    if not record.rate:
        return openai_error(
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', "
            "'mpga', 'oga', 'ogg', 'wav', 'webm']",
            param="file",
        )
    language = record.fields.get("language")
    if language is not None and (len(language) != 2 or not language.isalpha()):
        return openai_error(
            f"Invalid language '{language}'. Language parameter must be specified in "
            "ISO-639-1 format.",
            param="language",
            code="invalid_language_format",
        )
    if record.duration < 0.1:
        return openai_error(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            param="file",
            code="audio_too_short",
        )
    return None
