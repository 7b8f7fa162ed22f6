"""The pipeline protocol of ``bench.fakeprovider`` (``--protocol pipeline``): Deepgram, OpenAI
chat completions and ElevenLabs text-to-speech on one port, each answering after a FIXED delay.

The pipeline provider (docs/providers/pipeline.md) reaches three services per call; here they are
one process with the raw framing and uvloop of the other fakes, told apart by the request:

* ``GET /v1/listen`` upgraded to a WebSocket (``Authorization: Token``): Deepgram live. Caller
  audio arrives as binary μ-law frames and is recorded with its tags, as the other fakes record
  ``append``. The bench caller (``bench.loadgen --caller-talk``) marks its frames in byte 6:
  silence, voiced, or the **last voiced frame of an utterance**; voiced frames carry the caller's
  number after it. The first voiced frame of an utterance yields ``SpeechStarted``; the last one
  ends the utterance, and ``--stt-delay`` ms after receiving it the fake sends a final
  ``Results`` (``is_final`` and ``speech_final``) with the transcript ``Question T from NUMBER.``
  The end is read from the mark rather than from the silence after it, so the fake's own
  endpointing wait is zero: ``--stt-delay`` stands for Deepgram's endpointing and finalisation.
* ``POST /v1/chat/completions`` (``Authorization: Bearer``): the last user message names the call
  and turn; the SSE answer's first sentence (``Answer T for NUMBER begins.``, then a space, which
  completes it for the sentence splitter) comes ``--llm-delay`` ms after the request, the second
  sentence ``--llm-rest`` ms later, then ``[DONE]``.
* ``POST /v1/text-to-speech/{voice}/stream`` (``xi-api-key``): a chunked body of μ-law audio,
  its first chunk ``--tts-delay`` ms after the request, then ``--tts-chunk-ms`` chunks at
  ``--tts-speed`` times real time, ``--sentence-ms`` of audio per sentence. The 20 ms frames of
  a reply are tagged (``bench.tagging``) and recorded like the other fakes' agent audio; the
  first message (which names no call) is answered with untagged silence.

For every caller turn the session records when the last voiced frame arrived, when each service
answered and which tagged frame began the reply; ``bench.analysis.analyse_pipeline`` adds the
generator's times (when that frame was sent, when the reply's first frame reached the caller)
and subtracts the fixed delays: what remains is the latency our code added.
"""

# JSON frames are built with %-formatting on purpose: their braces would need escaping in f-strings.
# ruff: noqa: UP031

from __future__ import annotations

import json
import re
import time

from . import tagging, wire
from .fakeprovider import Connection, Session

#: Byte 6 of a bench caller frame (after the tag): what the frame is.
SILENT, VOICED, UTTERANCE_END = 0x53, 0x56, 0x45  # "S", "V", "E"
#: Bytes 7..22 of a bench caller frame: the caller's number, space padded.
NUMBER_BYTES = 16
LISTEN_PATH = "/v1/listen"
CHAT_PATH = "/v1/chat/completions"
_TTS_PATH = re.compile(r"^/v1/text-to-speech/[^/]+/stream$")
_QUESTION = re.compile(r"Question (\d+) from (\+?\d+)")
_ANSWER = re.compile(r"Answer (\d+) for (\+?\d+) (begins|ends)")
monotonic = time.monotonic


def caller_tail(kind: int, number: str) -> bytes:
    """The 154 bytes after the tag of a bench caller frame of ``kind`` for caller ``number``:
    the kind, the number, then speech-like filler or μ-law silence."""
    head = bytes((kind,)) + number.encode().ljust(NUMBER_BYTES)
    if kind == SILENT:
        return head + b"\xff" * (tagging.FRAME_BYTES - tagging.TAG_BYTES - len(head))
    return head + tagging.FILLER[len(head) :]


class PipelineSession(Session):
    """A ``Session`` (caller audio in, agent audio out) plus the call's turns."""

    def __init__(self, number: int, opened: float):
        super().__init__(number, opened)
        self.audio_bytes = 0
        self.speaking = False
        self.onset_s = 0.0
        #: One dict per caller turn: ``end_tag`` (the caller frame that ended it), ``end_recv``,
        #: ``results_sent``, ``chat_req``, ``first_text_sent``, ``tts_req``, ``tts_first_sent``,
        #: ``first_tag`` (the reply's first agent frame).
        self.turns: list[dict] = []


class PipelineConnection(Connection):
    """One socket: a Deepgram stream, or a kept-alive HTTP connection (chat or TTS requests)."""

    def __init__(self, fake):
        super().__init__(fake)
        self.http = False
        self.pending: list = []  # timers of the response being written

    # -- requests -------------------------------------------------------------------------------

    def data_received(self, data: bytes):
        if self.reader is not None:  # a Deepgram stream
            self._frames(data)
            return
        self.head += data
        while True:
            parts = wire.split_head(self.head)
            if parts is None:
                return
            head, rest = parts
            start, headers = wire.parse_head(head)
            size = int(headers.get("content-length", "0") or 0)
            if len(rest) < size:
                return
            self.head = bytearray(rest[size:])
            if not self._request(start, headers, rest[:size]):
                return

    def _request(self, start: str, headers: dict[str, str], body: bytes) -> bool:
        """Answer one request; False once the connection is no longer plain HTTP."""
        parts = start.split(" ")
        path = (parts[1] if len(parts) > 1 else "").split("?", 1)[0]
        now = monotonic()
        if path == LISTEN_PATH and headers.get("upgrade", "").lower() == "websocket":
            if headers.get("authorization") != f"Token {self.args.api_key}":
                self._reply_error(
                    401, '{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}'
                )
                return False
            self.transport.write(wire.server_accept(headers))
            self.reader = wire.FrameReader()
            self.session = self.fake.new_session(PipelineSession)
            if self.head:
                rest, self.head = bytes(self.head), bytearray()
                self._frames(rest)
            return False
        self.http = True
        if path == CHAT_PATH:
            if headers.get("authorization") != f"Bearer {self.args.api_key}":
                self._reply_error(401, '{"error":{"message":"Incorrect API key"}}')
                return False
            self._chat(json.loads(body), now)
        elif _TTS_PATH.match(path):
            if headers.get("xi-api-key") != self.args.api_key:
                self._reply_error(401, '{"detail":{"status":"invalid_api_key"}}')
                return False
            self._tts(json.loads(body), now)
        else:
            self._reply_error(404, '{"detail":"not found"}')
            return False
        return True

    def _reply_error(self, status: int, body: str) -> None:
        self.transport.write(wire.http_response(status, body.encode(), "application/json"))
        self.transport.close()

    def _start_chunked(self, content_type: str) -> None:
        self.transport.write(
            (
                "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                % content_type
            ).encode()
        )

    def _chunk(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _later(self, delay_ms: float, callback, *args) -> None:
        self.timers.append(self.loop.call_later(delay_ms / 1000, callback, *args))

    def _turn(self, key: str, number: str) -> dict | None:
        session = self.fake.by_key.get(key)
        if session is None:
            return None
        n = int(number)
        return session.turns[n - 1] if 0 < n <= len(session.turns) else None

    # -- OpenAI chat completions ----------------------------------------------------------------

    def _chat(self, body: dict, now: float) -> None:
        messages = body.get("messages") or [{}]
        asked = str(messages[-1].get("content", ""))
        found = _QUESTION.search(asked)
        turn = self._turn(found.group(2), found.group(1)) if found else None
        if turn is not None:
            turn["chat_req"] = now
        n, key = (found.group(1), found.group(2)) if found else ("0", "unknown")
        self._start_chunked("text/event-stream")
        self._later(self.args.llm_delay, self._chat_first, turn, n, key)

    def _sse(self, content: str | None, finish: str | None = None) -> bytes:
        delta = "{}" if content is None else '{"content":%s}' % json.dumps(content)
        return (
            'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"bench",'
            '"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n'
            % (delta, "null" if finish is None else '"%s"' % finish)
        ).encode()

    def _chat_first(self, turn: dict | None, n: str, key: str) -> None:
        # The first sentence whole, and the space that tells the splitter it is complete.
        self._chunk(
            self._sse("Answer %s for %s" % (n, key)) + self._sse(" begins.") + self._sse(" ")
        )
        if turn is not None:
            turn["first_text_sent"] = monotonic()
        self._later(self.args.llm_rest, self._chat_rest, n, key)

    def _chat_rest(self, n: str, key: str) -> None:
        self._chunk(
            self._sse("Answer %s for %s ends." % (n, key))
            + self._sse(None, "stop")
            + b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[],'
            b'"usage":{"prompt_tokens":20,"completion_tokens":12,"total_tokens":32}}\n\n'
            + b"data: [DONE]\n\n"
        )
        self._chunk(b"")  # the last chunk: the body ends, the connection stays open

    # -- ElevenLabs text-to-speech --------------------------------------------------------------

    def _tts(self, body: dict, now: float) -> None:
        found = _ANSWER.search(str(body.get("text", "")))
        session = self.fake.by_key.get(found.group(2)) if found else None
        turn = self._turn(found.group(2), found.group(1)) if found else None
        first = found is not None and found.group(3) == "begins"
        if turn is not None and first:
            turn["tts_req"] = now
        self._start_chunked("audio/basic")
        frames = (self.args.sentence_ms if session else self.args.greeting_ms) // 20
        self._later(self.args.tts_delay, self._tts_chunk, session, turn if first else None, frames)

    def _tts_chunk(self, session: PipelineSession | None, turn: dict | None, left: int) -> None:
        if self.transport.is_closing():
            return
        count = min(left, max(1, self.args.tts_chunk_ms // 20))
        if session is None:
            data = tagging.SILENCE * count
        else:
            pieces = []
            for _ in range(count):
                index = session.out_index
                session.out_index += 1
                session.out_bytes += tagging.FRAME_BYTES
                session.out_tag.append(index)
                session.out_cum.append(session.out_bytes)
                session.out_resp.append(len(session.turns))
                pieces.append(tagging.tagged(index))
            data = b"".join(pieces)
            sent = monotonic()
            session.out_t.extend([sent] * count)
            if turn is not None:
                turn["tts_first_sent"] = sent
                turn["first_tag"] = session.out_index - count
        self._chunk(data)
        left -= count
        if left > 0:
            every = self.args.tts_chunk_ms / self.args.tts_speed
            self._later(every, self._tts_chunk, session, None, left)
        else:
            self._chunk(b"")

    # -- Deepgram -------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        now = monotonic()
        for opcode, payload in self.reader.feed(data):
            if opcode == wire.OP_BINARY:
                self._audio(payload, now)
            elif opcode == wire.OP_TEXT:
                self._control(payload)
            elif opcode == wire.OP_PING:
                self.transport.write(wire.frame(payload, wire.OP_PONG))
            elif opcode == wire.OP_CLOSE:
                if not self.closing:
                    self.closing = True
                    self.transport.write(wire.frame(payload[:2], wire.OP_CLOSE))
                self.transport.close()
                return

    def _audio(self, audio: bytes, now: float) -> None:
        session = self.session
        size = len(audio)
        onset = session.audio_bytes / 8000
        session.audio_bytes += size
        session.in_bytes += size
        session.in_t.append(now)
        tag = int.from_bytes(audio[2:6], "big") if audio[:2] == tagging.MAGIC else -1
        session.in_tag.append(tag)
        session.in_cum.append(session.in_bytes)
        kind = audio[6] if size > 6 else 0
        if kind not in (SILENT, VOICED, UTTERANCE_END):
            return  # not a bench caller frame
        if session.key.startswith("session-"):
            session.key = audio[7 : 7 + NUMBER_BYTES].decode("ascii", "replace").strip()
            self.fake.by_key[session.key] = session
        if kind == SILENT:
            return
        if not session.speaking:
            session.speaking = True
            session.onset_s = onset
            self._send(
                '{"type":"SpeechStarted","channel":[0,1],"timestamp":%.3f}' % session.onset_s
            )
        if kind == UTTERANCE_END:
            session.speaking = False
            turn = {"n": len(session.turns) + 1, "end_tag": tag, "end_recv": now}
            session.turns.append(turn)
            self._later(
                self.args.stt_delay, self._final, turn, session.onset_s, session.audio_bytes / 8000
            )

    def _final(self, turn: dict, start: float, end: float) -> None:
        session = self.session
        self._send(
            '{"type":"Results","channel_index":[0,1],"duration":%.3f,"start":%.3f,'
            '"is_final":true,"speech_final":true,"channel":{"alternatives":[{"transcript":'
            '"Question %d from %s.","confidence":0.99,"words":[]}]}}'
            % (end - start, start, turn["n"], session.key)
        )
        turn["results_sent"] = monotonic()

    def _control(self, payload: bytes) -> None:
        if b"CloseStream" in payload:
            self._send(
                '{"type":"Metadata","request_id":"bench-%d","duration":%.3f,"channels":1}'
                % (self.session.number, self.session.audio_bytes / 8000)
            )
            if not self.closing:
                self.closing = True
                self.transport.write(wire.close_frame(1000))
        # KeepAlive: nothing to do.
