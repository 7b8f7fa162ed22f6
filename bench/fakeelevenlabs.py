"""The ElevenLabs Conversational AI protocol of ``bench.fakeprovider`` (``--protocol elevenlabs``).

The same modes, greeting and barge-ins as the OpenAI Realtime fake, spoken the way an ElevenLabs
agent speaks them (docs/providers/elevenlabs_convai.md#during-a-call), on the same port:

* a plain HTTP ``GET /v1/convai/conversation/get-signed-url?agent_id=...`` (``xi-api-key``
  checked) answers with a ``ws://`` signed URL back to this port;
* on that socket the fake waits for ``conversation_initiation_client_data``, answers
  ``conversation_initiation_metadata`` with ``ulaw_8000`` both ways (Twilio's μ-law passes
  through untouched, so tags survive), and speaks the greeting at once: ``agent_response``,
  100 ms ``audio`` chunks with one ``event_id``, ``agent_response_complete``;
* caller audio arrives as ``{"user_audio_chunk": ...}``; echo/duty replies are ``audio`` in real
  time, each reply with the next ``event_id``;
* a barge-in is ``interruption`` naming the playing reply's ``event_id`` (ElevenLabs has already
  stopped it: no more audio of it follows), then ``user_transcript`` 0.4 s later;
* a ``ping`` goes out every ``--ping-interval`` seconds; each ``pong``'s delay is recorded.

Barge-ins are recorded exactly as the OpenAI fake records ``speech_started`` (time, reply number,
item), so ``bench.analysis`` measures interruption → ``clear`` the same way. There is no
truncate in this protocol: that column stays empty.

The caller is identified from the initiation data: the prompt override carries the filled system
prompt (``Bench agent for caller +1...``); ``dynamic_variables.caller_number`` is the fallback.
"""

# JSON frames are built with %-formatting on purpose: their braces would need escaping in f-strings.
# ruff: noqa: UP031

from __future__ import annotations

import base64
import json
import time
from array import array
from urllib.parse import parse_qs, urlsplit

from . import tagging, wire
from .fakeprovider import _CALLER_RE, Connection, Session

SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
SOCKET_PATH = "/v1/convai/conversation"
CHUNK_PREFIX = b'{"user_audio_chunk":"'
AUDIO_PREFIX = b'{"type":"audio","audio_event":{"audio_base_64":"'
monotonic = time.monotonic


class ElevenLabsSession(Session):
    """A ``Session`` plus the pings sent and how long each ``pong`` took."""

    def __init__(self, number: int, opened: float):
        super().__init__(number, opened)
        self.ping_sent: dict[int, float] = {}
        self.pong_t = array("d")
        self.pong_delay = array("d")
        self.conversation_id = f"conv_bench_{number}"


class ElevenLabsConnection(Connection):
    """One socket: either the signed-URL request (answered, then closed) or a conversation."""

    def __init__(self, fake):
        super().__init__(fake)
        self._audio_suffix = b""
        self._pings = 0

    # -- HTTP and the WebSocket handshake ----------------------------------------------------

    def _handshake(self, head: bytes) -> bool:
        start, headers = wire.parse_head(head)
        parts = start.split(" ")
        target = urlsplit(parts[1] if len(parts) > 1 else "")
        query = parse_qs(target.query)
        agent_id = (query.get("agent_id") or [""])[0]
        if target.path == SIGNED_URL_PATH:
            self._signed_url(headers, agent_id)
            return False
        if (
            target.path != SOCKET_PATH
            or headers.get("upgrade", "").lower() != "websocket"
            or not agent_id
            or not query.get("conversation_signature")
        ):
            self._refuse(403, '{"detail":"bad conversation URL"}')
            return False
        self.transport.write(wire.server_accept(headers))
        self.reader = wire.FrameReader()
        self.session = self.fake.new_session(ElevenLabsSession)
        # Nothing is sent before the client's initiation data, as ElevenLabs does.
        if self.args.barge_in > 0 and self.fake.mode != "sink":
            first = self.fake.rng.uniform(self.args.barge_in, 2 * self.args.barge_in)
            self.timers.append(self.loop.call_later(first, self._barge_in))
        return True

    def _signed_url(self, headers: dict[str, str], agent_id: str) -> None:
        if headers.get("xi-api-key") != self.args.api_key:
            self._refuse(401, '{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}')
        elif not agent_id:
            self._refuse(422, '{"detail":[{"loc":["query","agent_id"],"msg":"field required"}]}')
        else:
            port = self.transport.get_extra_info("sockname")[1]
            url = "ws://127.0.0.1:%d%s?agent_id=%s&conversation_signature=bench" % (
                port,
                SOCKET_PATH,
                agent_id,
            )
            body = json.dumps({"signed_url": url}).encode()
            self.transport.write(wire.http_response(200, body, "application/json"))
            self.transport.close()

    def _refuse(self, status: int, body: str) -> None:
        self.transport.write(wire.http_response(status, body.encode(), "application/json"))
        self.transport.close()

    # -- client messages ----------------------------------------------------------------------

    def _on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith(CHUNK_PREFIX) and payload.endswith(b'"}'):
            self._on_append(payload[len(CHUNK_PREFIX) : -2], now)
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.session.errors.append("not JSON")
            return
        if "user_audio_chunk" in event:
            self._on_append(str(event["user_audio_chunk"]).encode(), now)
            return
        kind = event.get("type")
        session = self.session
        if kind == "conversation_initiation_client_data":
            self._start(event, now)
        elif kind == "pong":
            sent = session.ping_sent.pop(event.get("event_id"), None)
            if sent is None:
                session.errors.append(f"pong for an unknown ping: {event.get('event_id')!r}")
            else:
                session.pong_t.append(now)
                session.pong_delay.append(now - sent)
        elif kind not in ("user_activity", "contextual_update", "user_message"):
            session.errors.append(f"unexpected message {kind!r}")

    def _start(self, event: dict, now: float) -> None:
        session = self.session
        override = event.get("conversation_config_override") or {}
        prompt = ((override.get("agent") or {}).get("prompt") or {}).get("prompt", "")
        found = _CALLER_RE.search(str(prompt))
        caller = (event.get("dynamic_variables") or {}).get("caller_number")
        if found:
            session.key = found.group(1)
        elif caller:
            session.key = str(caller)
        self._send(
            '{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":'
            '{"conversation_id":"%s","agent_output_audio_format":"ulaw_8000",'
            '"user_input_audio_format":"ulaw_8000"}}' % session.conversation_id
        )
        if session.greeting_at is None:
            self._greeting(now)
        if self.args.ping_interval > 0:
            self.timers.append(self.loop.call_later(self.args.ping_interval, self._ping))

    # -- agent replies ------------------------------------------------------------------------

    def _start_reply(self, now: float, text: str = "Bench reply.") -> None:
        session = self.session
        session.responses += 1
        n = session.responses  # the utterance's event_id
        session.active = (f"event_{n}", f"event_{n}", n)
        session.active_since = now
        self._send(
            '{"type":"agent_response","agent_response_event":{"agent_response":"%s"}}' % text
        )
        self._audio_suffix = b'","event_id":%d}}' % n

    def _agent_audio(self, size: int) -> None:
        session = self.session
        index = session.out_index
        session.out_index += 1
        if size == tagging.FRAME_BYTES:
            b64 = tagging.frame_b64(index)
        else:
            b64 = base64.b64encode(tagging.tagged(index, size)).decode()
        message = AUDIO_PREFIX + b64.encode() + self._audio_suffix
        session.out_bytes += size
        session.out_tag.append(index)
        session.out_cum.append(session.out_bytes)
        session.out_resp.append(session.active[2])
        session.out_t.append(monotonic())
        if not self.closing:
            self.transport.write(wire.frame(message))

    def _end_reply(self, status: str, reason: str | None) -> None:
        self.session.active = None
        if status == "completed":
            self._send('{"type":"agent_response_complete"}')

    def _greeting(self, now: float) -> None:
        session = self.session
        self._start_reply(now, "Hello, this is the bench agent.")
        session.greeting_at = monotonic()
        chunk = tagging.SILENCE * 5  # 100 ms
        b64 = base64.b64encode(chunk)
        remaining = self.args.greeting_ms * 8
        while remaining > 0:
            size = min(remaining, len(chunk))
            piece = b64 if size == len(chunk) else base64.b64encode(chunk[:size])
            session.out_bytes += size
            session.out_tag.append(-1)
            session.out_cum.append(session.out_bytes)
            session.out_resp.append(session.active[2])
            session.out_t.append(monotonic())
            self.transport.write(wire.frame(AUDIO_PREFIX + piece + self._audio_suffix))
            remaining -= size
        self._end_reply("completed", None)
        # Echo/duty audio starts once the greeting has played (it is paced in real time).
        session.talk_from = session.greeting_at + self.args.greeting_ms / 1000 + 0.2

    def _barge_in(self) -> None:
        session = self.session
        if self.closing or session is None:
            return
        if session.active is None or session.active[2] <= 1:
            self.timers.append(self.loop.call_later(0.25, self._barge_in))
            return
        now = monotonic()
        event_id = session.active[2]
        session.bargeins.append((now, event_id, session.active[1]))
        # ElevenLabs stops the utterance itself: no more of its audio, no completion.
        session.active = None
        self._send('{"type":"interruption","interruption_event":{"event_id":%d}}' % event_id)
        self.timers.append(self.loop.call_later(0.4, self._caller_turn_done))
        self.timers.append(self.loop.call_later(self.args.barge_in, self._barge_in))

    def _caller_turn_done(self, *_ignored) -> None:
        self._send(
            '{"type":"user_transcript","user_transcription_event":'
            '{"user_transcript":"Bench caller."}}'
        )

    def _ping(self) -> None:
        if self.closing:
            return
        self._pings += 1
        self.session.ping_sent[self._pings] = monotonic()
        self._send('{"type":"ping","ping_event":{"event_id":%d,"ping_ms":null}}' % self._pings)
        self.timers.append(self.loop.call_later(self.args.ping_interval, self._ping))
