"""Fixtures for call-path tests: a configured Twilio number and agent, the fake OpenAI, a caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from twilio.request_validator import RequestValidator

from tests.fakes.openai_realtime import FakeOpenAIRealtime
from tests.fakes.twilio_stream import FakeTwilioCaller, sid
from voiceagents.call import streamtokens
from voiceagents.models import Agent, Call, CallStatus, Credential, PhoneNumber

AUTH_TOKEN = "twilio-auth-token-for-tests-0123"
MEDIA_URL = "wss://voice.example.test/telephony/twilio/media/"


@dataclass
class CallSetup:
    call: Call
    agent: Agent
    token: str

    @property
    def parameters(self) -> dict[str, str]:
        return {"call_id": str(self.call.pk), "stream_token": self.token}


@pytest.fixture
async def fake_openai():
    async with FakeOpenAIRealtime() as fake:
        yield fake


def _create_call(openai_url: str, **agent_fields) -> CallSetup:
    openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
    openai.secret = "sk-test-openai"
    openai.save()
    twilio = Credential(vendor="twilio", label="twilio", data={"account_sid": "AC" + "0" * 32})
    twilio.secret = AUTH_TOKEN
    twilio.save()
    fields = {
        "name": "Front desk",
        "slug": "front-desk",
        "system_prompt": "You work for {company}.",
        "first_message": "Hello from {company}!",
        "variables": {"company": "Acme"},
        "credential": openai,
    }
    fields.update(agent_fields)
    agent = Agent.objects.create(**fields)
    number = PhoneNumber.objects.create(
        number="+14155550199", carrier="twilio", credential=twilio, agent=agent
    )
    call = Call.objects.create(
        agent=agent,
        phone_number=number,
        carrier="twilio",
        carrier_call_id=sid("CA"),
        direction="inbound",
        from_number="+14155550100",
        to_number=number.number,
        status=CallStatus.RINGING,
    )
    return CallSetup(call, agent, streamtokens.mint(call.pk))


@pytest.fixture
def create_call(fake_openai, recordings_dir):
    async def create(**agent_fields) -> CallSetup:
        return await sync_to_async(_create_call)(fake_openai.url, **agent_fields)

    return create


def signed_headers(url: str = MEDIA_URL, token: str = AUTH_TOKEN) -> list[tuple[bytes, bytes]]:
    signature = RequestValidator(token).compute_signature(url, {})
    return [(b"x-twilio-signature", signature.encode()), (b"host", b"voice.example.test")]


def media_application():
    from telephony.routing import websocket_urlpatterns

    return URLRouter(websocket_urlpatterns)


class CommunicatorCaller(FakeTwilioCaller):
    """The fake Twilio caller over Channels' WebsocketCommunicator."""

    def __init__(self, communicator: WebsocketCommunicator, **kwargs):
        self.communicator = communicator
        self.close_code = None
        super().__init__(self._send, self._receive, **kwargs)

    async def _send(self, text: str):
        await self.communicator.send_to(text_data=text)

    async def _receive(self, timeout: float):
        message = await self.communicator.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code")
            return None
        return message.get("text")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code


@pytest.fixture
async def connect_caller():
    opened: list[WebsocketCommunicator] = []
    callers: list[CommunicatorCaller] = []

    async def connect(headers=None) -> tuple[bool, CommunicatorCaller]:
        communicator = WebsocketCommunicator(
            media_application(),
            "/telephony/twilio/media/",
            headers=signed_headers() if headers is None else headers,
        )
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=10)
        caller = CommunicatorCaller(communicator)
        callers.append(caller)
        return connected, caller

    yield connect
    for caller in callers:
        await caller.aclose()
    for communicator in opened:
        try:
            await communicator.disconnect(timeout=10)
        except Exception:  # noqa: BLE001 - already closed by the server
            pass


# -- every carrier's media stream, through one harness (tests/calls/harness.py) ----------------


@pytest.fixture
def telnyx_api():
    from tests.fakes.telnyx import FakeTelnyxAPI

    with FakeTelnyxAPI() as server:
        yield server


@pytest.fixture
def twilio_harness(create_call, fake_openai):
    from .harness import TwilioHarness

    return TwilioHarness(create_call, fake_openai, media_application())


@pytest.fixture
def telnyx_harness(fake_openai, recordings_dir, telnyx_api, async_client, monkeypatch):
    from tests.fakes import telnyx as fake

    from .harness import TelnyxHarness, ring_telnyx

    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL", "TELNYX_L16_BYTE_ORDER"):
        monkeypatch.delenv(name, raising=False)
    key = fake.keypair("telnyx harness")

    async def ring(codec: str = "PCMU"):
        return await ring_telnyx(async_client, telnyx_api, key, fake_openai.url, codec)

    return TelnyxHarness(ring, fake_openai, media_application())


@pytest.fixture(params=["twilio", "telnyx"])
def harness(request):
    """Each carrier's harness in turn."""
    return request.getfixturevalue(f"{request.param}_harness")


@pytest.fixture
async def streams():
    from .harness import Streams

    opened = Streams()
    yield opened
    await opened.aclose()
