"""A simulated Twilio caller: the phone side of a call, played against a running server.

``voiceagents_call_simulate`` uses it to make a call with no phone and no carrier account. It does
what Twilio does (docs/carriers/twilio.md): POST the signed voice webhook, read the TwiML answer,
open the media stream with a signed handshake, then send ``connected``, ``start`` and 20 ms μ-law
``media`` frames in real time. Like a real phone it never stops sending: silence between the
caller's words. The agent's audio is "played" on a real-time clock, so each ``mark`` is echoed
once the audio before it would have been heard, and a ``clear`` drops what is queued and echoes
the pending marks at once (docs/carriers/twilio.md#marks-and-clear). Barge-in and turn-taking on
the server therefore see what they would see on a real call.

Nothing here touches the database: the command finds the agent, the number and its auth token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import wave
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telephony.carriers.twilio.signature import SIGNATURE_HEADER, compute_signature

from .audio import g711
from .audio.convert import Converter
from .audio.formats import MULAW_8K, AudioFormat, Encoding

#: 20 ms of μ-law at 8 kHz: the size of every frame Twilio sends.
FRAME_BYTES = 160
FRAME_SECONDS = 0.02
#: μ-law silence (decodes to 0).
SILENCE = b"\xff" * FRAME_BYTES


class SimulationError(Exception):
    """The server refused or broke the call; the message says what to do about it."""


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 hex digits (``CA…``, ``MZ…``, ``AC…``)."""
    return prefix + secrets.token_hex(16)


# -- the voice webhook ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamAnswer:
    """What the TwiML answer tells Twilio to do: connect a media stream with these parameters."""

    url: str
    parameters: dict[str, str]


def parse_twiml(document: str) -> StreamAnswer:
    """The ``<Connect><Stream>`` of a TwiML answer; ``SimulationError`` for anything else.

    The server answers calls it cannot take with ``<Say>`` and ``<Hangup>``: the spoken apology is
    the error message.
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError as err:
        raise SimulationError(f"The voice webhook did not answer with TwiML: {err}") from err
    stream = root.find("./Connect/Stream")
    if stream is None:
        said = " ".join((say.text or "").strip() for say in root.iter("Say"))
        raise SimulationError(
            "The server did not connect the call"
            + (f"; it said: {said!r}" if said else "")
            + ". Is the number's agent enabled?"
        )
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamAnswer(stream.get("url", ""), parameters)


def post_voice_webhook(
    server: str, public_base: str, path: str, params: dict[str, str], auth_token: str
) -> StreamAnswer:
    """POST the incoming-call webhook to ``server`` as Twilio would, signed for ``public_base``.

    Twilio signs the URL it requests, which the server rebuilds from its ``PUBLIC_URL``; here the
    request goes to ``server`` directly, so the signature is computed for the public URL instead.
    """
    headers = {SIGNATURE_HEADER: compute_signature(public_base + path, params, auth_token)}
    try:
        response = httpx.post(
            server.rstrip("/") + path,
            content=urlencode(params),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
    except httpx.TransportError as err:
        raise SimulationError(
            f"No server answers at {server} ({err}). Start it first, e.g. with `make demo`, "
            "or give its address with --server."
        ) from err
    if response.status_code == 403:
        raise SimulationError(
            f"The server refused the webhook's signature (403). It checks it against its own "
            f"VOICEAGENTS_PUBLIC_URL and database: run this command with the same settings as the "
            f"server (signed for {public_base})."
        )
    if response.status_code != 200:
        raise SimulationError(
            f"The voice webhook answered {response.status_code}: {response.text.strip()[:500]}"
        )
    return parse_twiml(response.text)


def local_stream_url(stream_url: str, server: str) -> str:
    """The TwiML's public ``wss://`` stream URL, pointed at ``server`` instead (same path)."""
    target = urlsplit(server)
    scheme = "wss" if target.scheme == "https" else "ws"
    return urlunsplit(urlsplit(stream_url)._replace(scheme=scheme, netloc=target.netloc))


# -- audio in and out ----------------------------------------------------------------------------


def to_mulaw(audio: bytes, source: AudioFormat) -> bytes:
    """``audio`` in ``source`` format as μ-law 8 kHz mono, the phone's format."""
    converter = Converter(source, MULAW_8K)
    return bytes(converter.convert(audio)) + converter.flush()


def read_wav(path: str | Path) -> bytes:
    """A PCM WAV file (any rate, mono or stereo, 16-bit) as μ-law 8 kHz."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as err:
        raise SimulationError(f"Cannot read {path} as a WAV file: {err}") from err
    if width != 2:
        raise SimulationError(f"{path}: only 16-bit PCM WAV files are supported ({width * 8}-bit)")
    return to_mulaw(frames, AudioFormat(Encoding.PCM16, rate, channels))


def write_wav(path: str | Path, mulaw: bytes) -> None:
    """μ-law 8 kHz audio as a 16-bit PCM WAV file, which every player opens."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(g711.ulaw_decode(mulaw).astype("<i2").tobytes())


#: The caller's offline voice: the one PocketSphinx (the offline speech-to-text) understands best
#: (docs/stages/local.md), a little slower than eSpeak's default.
CALLER_VOICE = "en-us+klatt4"
CALLER_RATE = 150


async def speak(text: str, *, voice: str = CALLER_VOICE, language: str = "en") -> bytes:
    """``text`` spoken by the offline text-to-speech stage (eSpeak NG), as μ-law 8 kHz."""
    try:
        from .pipeline.base import StageContext
        from .pipeline.local_tts import LocalTTS
        from .providers.base import StageConfig
    except ImportError as err:
        raise SimulationError(
            f"The offline voice is not available ({err}): install the 'offline' extra, "
            "or give the caller's audio with --wav."
        ) from err
    tts = LocalTTS(
        StageConfig(id="local", voice=voice, language=language),
        StageContext(
            call_id="simulator",
            carrier_format=MULAW_8K,
            options={"tts_options": {"rate": CALLER_RATE}},
        ),
    )
    try:
        await tts.open()
        chunks = [chunk async for chunk in tts.synthesize(text)]
    except Exception as err:  # the stage's own errors say what is missing; name the stage
        raise SimulationError(f"The offline voice cannot say {text!r}: {err}") from err
    finally:
        await tts.close()
    return to_mulaw(b"".join(chunks), tts.output_format)


# -- the media stream ----------------------------------------------------------------------------


@dataclass
class Playback:
    """The phone's loudspeaker: agent audio plays in real time after what is already queued."""

    #: Loop time at which everything received so far has been played.
    until: float = 0.0
    #: (loop time the audio before it has played, mark name), oldest first.
    marks: deque = field(default_factory=deque)


class SimulatedCaller:
    """Twilio's side of one bidirectional media stream over a WebSocket client connection."""

    def __init__(self, ws: ClientConnection, *, call_sid: str, account_sid: str):
        self.ws = ws
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.stream_sid = new_sid("MZ")
        #: Every byte of agent audio received (μ-law 8 kHz), for the WAV of the agent's side.
        self.agent_audio = bytearray()
        self.marks_echoed: list[str] = []
        self.clears = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._seq = 0
        self._chunk = 0
        self._timestamp_ms = 0
        self._outgoing = bytearray()
        self._drained = asyncio.Event()
        self._drained.set()
        self._playback = Playback()
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def dial(
        cls, url: str, signature: str, *, call_sid: str, account_sid: str
    ) -> SimulatedCaller:
        """Open the media stream at ``url`` with Twilio's signed handshake."""
        try:
            ws = await connect(
                url, additional_headers={SIGNATURE_HEADER: signature}, open_timeout=10
            )
        except InvalidStatus as err:
            raise SimulationError(
                f"The server refused the media stream ({err.response.status_code}): the handshake "
                "signature is checked against VOICEAGENTS_PUBLIC_URL and the Twilio credentials "
                "in its database."
            ) from err
        except (OSError, TimeoutError) as err:
            raise SimulationError(f"Cannot open the media stream at {url}: {err}") from err
        return cls(ws, call_sid=call_sid, account_sid=account_sid)

    # -- frames ---------------------------------------------------------------------------------

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, frame: dict) -> None:
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed:
            self.closed.set()

    async def start(self, parameters: dict[str, str]) -> None:
        """``connected`` and ``start`` with the TwiML's parameters; then the phone is live."""
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        # The reader first: hang_up() stops the other two and keeps it until the socket closes.
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._microphone()),
            asyncio.ensure_future(self._loudspeaker()),
        ]

    async def say(self, audio: bytes) -> None:
        """Send ``audio`` (μ-law 8 kHz) in real time; returns once its last frame is sent."""
        self._outgoing += audio
        self._drained.clear()
        await self._drained.wait()

    async def dtmf(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def hang_up(self, timeout: float = 10.0) -> None:
        """Send ``stop`` (the caller hung up) and wait for the server to close the socket.

        The microphone goes quiet first: Twilio sends nothing after ``stop``.
        """
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            pass
        await self.aclose()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()

    # -- what the agent does ----------------------------------------------------------------------

    @property
    def agent_speaking(self) -> bool:
        """True while received agent audio is still playing."""
        return asyncio.get_running_loop().time() < self._playback.until

    async def wait_for_agent(self, start_timeout: float, quiet: float) -> bool:
        """Wait for the agent to speak and then be quiet for ``quiet`` seconds.

        False if no agent audio arrived within ``start_timeout`` (or the server hung up first).
        """
        loop = asyncio.get_running_loop()
        heard = len(self.agent_audio)
        deadline = loop.time() + start_timeout
        while len(self.agent_audio) == heard and not self.agent_speaking:
            if self.closed.is_set() or loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        while not self.closed.is_set() and loop.time() < self._playback.until + quiet:
            await asyncio.sleep(0.05)
        return True

    # -- the three loops of a phone ----------------------------------------------------------------

    async def _microphone(self) -> None:
        """20 ms frames on a real-time grid: the caller's queued audio, else silence."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        index = 0
        while not self.closed.is_set():
            frame = bytes(self._outgoing[:FRAME_BYTES])
            del self._outgoing[:FRAME_BYTES]
            frame += SILENCE[len(frame) :]
            await self._media(frame)
            if not self._outgoing:
                self._drained.set()
            index += 1
            # On the grid, not after the send: small delays must not add up to drift.
            await asyncio.sleep(max(0.0, began + index * FRAME_SECONDS - loop.time()))

    async def _media(self, payload: bytes) -> None:
        self._chunk += 1
        await self._send(
            {
                "event": "media",
                "sequenceNumber": self._next_seq(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(self._timestamp_ms),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )
        self._timestamp_ms += len(payload) // 8

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for text in self.ws:
                frame = json.loads(text)
                event = frame.get("event")
                if event == "media":
                    audio = base64.b64decode(frame["media"]["payload"])
                    self.agent_audio += audio
                    start = max(loop.time(), self._playback.until)
                    self._playback.until = start + len(audio) / 8000
                elif event == "mark":
                    name = frame["mark"]["name"]
                    self._playback.marks.append((self._playback.until, name))
                elif event == "clear":
                    self.clears += 1
                    self._playback.until = loop.time()
                    while self._playback.marks:
                        await self._echo_mark(self._playback.marks.popleft()[1])
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    async def _loudspeaker(self) -> None:
        """Echo each mark once the audio queued before it has played, as Twilio does."""
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            marks = self._playback.marks
            while marks and marks[0][0] <= loop.time():
                await self._echo_mark(marks.popleft()[1])
            await asyncio.sleep(0.01)

    async def _echo_mark(self, name: str) -> None:
        self.marks_echoed.append(name)
        await self._send(
            {
                "event": "mark",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )
