"""One carrier's media stream, as the tests drive it: set up a call, open the stream, start it.

A *harness* knows one carrier: how its calls come to exist (Twilio: rows as the voice webhook
leaves them; Telnyx: the signed ``call.initiated`` webhook against the fake Telnyx API), what its
handshake carries, and which fake caller speaks its frames. ``Streams`` opens media streams
through Channels' ``WebsocketCommunicator`` for any harness, so the same test runs for every
carrier (``tests/telephony/media_cases.py`` and the survival tests).

A new carrier's tests provide a harness with the same attributes and methods (``CarrierHarness``
below): the contract suite needs nothing else, not even a particular provider.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from tests.fakes import telnyx as fake_telnyx
from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.fakes.twilio_stream import FakeTwilioCaller


@dataclass
class Incoming:
    """A call waiting for its media stream: what the carrier would send back to us."""

    call_id: str
    token: str
    carrier_call_id: str
    extra: dict = field(default_factory=dict)


class CarrierHarness(Protocol):
    """One carrier as the media-consumer contract (tests/telephony/media_cases.py) drives it."""

    #: The carrier's id; its ASGI application (routing its media path) and that path.
    carrier: str
    application: Any
    path: str
    #: Bytes of one 20 ms caller frame in the carrier's audio format.
    frame_bytes: int

    async def new_call(self) -> Incoming:
        """A call waiting for its stream, as the carrier's webhook leaves it."""

    def headers(self, incoming: Incoming | None, *, authenticated: bool = True, token=None):
        """The handshake's headers (``token`` replaces the stream token where it travels)."""

    def caller(self, transport: Transport, incoming: Incoming):
        """The carrier's fake caller over ``transport``: ``media(bytes)``, ``dtmf(d)``, ``stop()``,
        ``media_in``, ``closed``, ``aclose()``; it echoes marks once their audio has played."""

    async def start(self, caller, incoming: Incoming, **override) -> None:
        """Send the carrier's first frames and ``start``; ``override`` replaces ``call_id``,
        ``token`` or ``carrier_call_id``."""

    def provider_audio(self) -> int:
        """Bytes of caller audio the provider got so far (in all calls)."""

    def provider_connections(self) -> int:
        """Connections the provider saw so far."""

    async def agent_speaks(self) -> None:
        """Make the provider send agent audio on the last call."""


class OpenAIProvider:
    """The provider side of the harnesses below: the fake OpenAI Realtime server."""

    def __init__(self, fake_openai: FakeOpenAIRealtime):
        self.fake_openai = fake_openai

    def provider_audio(self) -> int:
        return sum(len(session.audio_in) for session in self.fake_openai.sessions)

    def provider_connections(self) -> int:
        return self.fake_openai.connection_attempts

    async def agent_speaks(self) -> None:
        await self.fake_openai.respond(ScriptedResponse(audio=b"\x2a" * 800, transcript="Hi."))


class Transport:
    """Text frames over a ``WebsocketCommunicator``; remembers the close code it saw."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    async def send(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float) -> str | None:
        message = await self.communicator.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)  # the ASGI default
            self.closed.set()
            return None
        return message.get("text")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """The close code, once the server closed the stream (read by the caller's reader)."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code


class TwilioHarness(OpenAIProvider):
    carrier = "twilio"
    path = "/telephony/twilio/media/"
    frame_bytes = 160

    def __init__(self, create_call, fake_openai: FakeOpenAIRealtime, application):
        super().__init__(fake_openai)
        self._create_call = create_call
        self.application = application

    async def new_call(self) -> Incoming:
        setup = await self._create_call()
        return Incoming(str(setup.call.pk), setup.token, setup.call.carrier_call_id)

    def headers(self, incoming: Incoming | None, *, authenticated: bool = True, token=None):
        from .conftest import signed_headers

        return signed_headers() if authenticated else [(b"host", b"voice.example.test")]

    def caller(self, transport: Transport, incoming: Incoming) -> FakeTwilioCaller:
        return FakeTwilioCaller(
            transport.send, transport.receive, call_sid=incoming.carrier_call_id
        )

    async def start(self, caller, incoming: Incoming, **override) -> None:
        params = {"call_id": override.get("call_id", incoming.call_id)}
        token = override.get("token", incoming.token)
        if token is not None:
            params["stream_token"] = token
        await caller.connected()
        await caller.start(
            params, call_sid=override.get("carrier_call_id", incoming.carrier_call_id)
        )


class TelnyxHarness(OpenAIProvider):
    carrier = "telnyx"
    path = "/telephony/telnyx/media/"
    frame_bytes = 160  # PCMU

    def __init__(self, ring, fake_openai: FakeOpenAIRealtime, application):
        super().__init__(fake_openai)
        self._ring = ring
        self.application = application

    async def new_call(self) -> Incoming:
        return await self._ring("PCMU")

    def headers(self, incoming: Incoming | None, *, authenticated: bool = True, token=None):
        # The stream token rides on the handshake.
        headers = [(b"host", b"voice.example.test")]
        token = token or (incoming.token if incoming is not None else None)
        if authenticated and token:
            headers.append((b"x-telnyx-streaming-auth-token", token.encode()))
        return headers

    def caller(self, transport: Transport, incoming: Incoming) -> fake_telnyx.FakeTelnyxCaller:
        return fake_telnyx.FakeTelnyxCaller(
            transport.send,
            transport.receive,
            call_control_id=incoming.carrier_call_id,
            bytes_per_ms=8,
        )

    async def start(self, caller, incoming: Incoming, **override) -> None:
        await caller.connected(override.get("token", incoming.token))
        caller.call_control_id = override.get("carrier_call_id", incoming.carrier_call_id)
        custom = {}
        state = incoming.extra["client_state"]
        if "call_id" in override:
            state, custom = None, {"call_id": override["call_id"]}
        await caller.start(state, encoding="PCMU", sample_rate=8000, custom_parameters=custom)


async def ring_telnyx(async_client, api, key, openai_url: str, codec: str = "PCMU") -> Incoming:
    """A Telnyx number answered by an agent, and a signed ``call.initiated`` for it."""
    await sync_to_async(create_telnyx_number)(openai_url, api.url, key.public_b64, codec)
    ccid = fake_telnyx.new_call_control_id()
    response = await fake_telnyx.post(async_client, fake_telnyx.call_initiated(ccid), key)
    assert response.status_code == 200
    body = api.of("streaming_start")[-1].body
    state = fake_telnyx.decode_client_state(body["client_state"])
    return Incoming(
        state["call_id"],
        body["stream_auth_token"],
        ccid,
        {"client_state": body["client_state"], "codec": codec},
    )


def create_telnyx_number(openai_url: str, api_url: str, public_key: str, codec: str):
    from voiceagents.models import Agent, Credential, PhoneNumber

    openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
    openai.secret = "sk-test-openai"
    openai.save()
    telnyx = Credential(
        vendor="telnyx",
        label="telnyx",
        data={"webhook_public_key": public_key},
        api_base_url=api_url,
    )
    telnyx.secret = fake_telnyx.API_KEY
    telnyx.save()
    agent = Agent.objects.create(
        name="Front desk",
        slug="front-desk",
        system_prompt="You work for Acme.",
        first_message="Hello from Acme!",
        credential=openai,
    )
    PhoneNumber.objects.create(
        number=fake_telnyx.OUR_NUMBER,
        carrier="telnyx",
        credential=telnyx,
        agent=agent,
        carrier_data={"codec": codec},
    )
    return agent


async def ended_call(call_id, timeout: float = 5.0):
    """The call's row once it has ended (``ended_at`` set), or as it is after ``timeout``."""
    from voiceagents.models import Call

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        call = await Call.objects.aget(pk=call_id)
        if call.ended_at is not None or loop.time() > deadline:
            return call
        await asyncio.sleep(0.05)


class Streams:
    """Opens media streams for a harness; closes everything it opened at teardown."""

    def __init__(self):
        self._opened: list[tuple[WebsocketCommunicator, object]] = []

    async def open(
        self, harness, incoming: Incoming | None, *, authenticated: bool = True, token=None
    ):
        """``(accepted, transport)`` for a new stream to the harness's route."""
        communicator = WebsocketCommunicator(
            harness.application,
            harness.path,
            headers=harness.headers(incoming, authenticated=authenticated, token=token),
        )
        accepted, _ = await communicator.connect(timeout=10)
        transport = Transport(communicator)
        self._opened.append((communicator, None))
        return accepted, transport

    async def call(self, harness, incoming: Incoming | None = None, **override):
        """A started call: ``(incoming, caller, transport)``; ``override`` alters the start."""
        incoming = incoming or await harness.new_call()
        accepted, transport = await self.open(harness, incoming, token=override.get("token"))
        assert accepted
        caller = harness.caller(transport, incoming)
        self._opened[-1] = (transport.communicator, caller)
        await harness.start(caller, incoming, **override)
        return incoming, caller, transport

    async def aclose(self) -> None:
        for communicator, caller in self._opened:
            if caller is not None:
                await caller.aclose()
            try:
                await communicator.disconnect(timeout=10)
            except Exception:  # noqa: BLE001 - already closed by the server
                pass
