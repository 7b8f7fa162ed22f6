"""Dummy Tel and Dummy Voice, registered for each test of this package and removed after it."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter

from telephony.routing import media_route
from tests.calls.harness import Incoming
from tests.voiceagents.providers.dummy import FakeDummyVendor
from voiceagents import services
from voiceagents.call import streamtokens
from voiceagents.carriers import carriers
from voiceagents.providers import ProviderSpec, providers
from voiceagents.vendors import VendorSpec, vendors

from .carrier import CARRIER, KEY_HEADER, VENDOR, DummyTelConsumer
from .fake import FRAME_BYTES, FakeDummyTelCaller

STREAM_KEY = "dummy-tel-stream-key-0123456789"
OUR_NUMBER = "+15550001234"

VOICE_VENDOR = VendorSpec(id="dummy_voice", name="Dummy Voice Co")
VOICE_PROVIDER = ProviderSpec(
    id="dummy_voice",
    name="Dummy Voice",
    vendor="dummy_voice",
    default_url="wss://voice.dummy.test/v1",
    runtime="tests.voiceagents.providers.dummy.DummyVoiceProvider",
)
REGISTRATIONS = [
    (vendors, VENDOR),
    (carriers, CARRIER),
    (vendors, VOICE_VENDOR),
    (providers, VOICE_PROVIDER),
]


@pytest.fixture(autouse=True)
def dummy_vendors(voiceagents_settings):
    """The one registry line each (here: four), from test code only."""
    voiceagents_settings["DUMMY_TEL_STREAM_KEY"] = STREAM_KEY
    for registry, spec in REGISTRATIONS:
        registry.register(spec)
    yield
    for registry, spec in REGISTRATIONS:
        registry.unregister(spec.id)


@pytest.fixture
async def fake_voice():
    async with FakeDummyVendor() as fake:
        yield fake


def create_number(voice_url: str):
    """A Dummy Tel number answered by a Dummy Voice agent, each row validated by its spec."""
    from voiceagents.models import Agent, Credential, PhoneNumber

    voice = Credential(vendor="dummy_voice", label="voice", api_base_url=voice_url)
    voice.secret = FakeDummyVendor.KEY
    voice.full_clean()
    voice.save()
    tel = Credential(vendor="dummy_tel", label="tel", data={"account": "acct-1"})
    tel.secret = "dummy-tel-api-token"
    tel.full_clean()
    tel.save()
    agent = Agent(
        name="Dummy desk",
        slug="dummy-desk",
        provider="dummy_voice",
        first_message="Hello from Dummy!",
        credential=voice,
    )
    agent.full_clean()
    agent.save()
    number = PhoneNumber(number=OUR_NUMBER, carrier="dummy_tel", credential=tel, agent=agent)
    number.full_clean()
    number.save()
    return number


class DummyTelHarness:
    """``tests.calls.harness.CarrierHarness`` for Dummy Tel, with Dummy Voice behind its calls."""

    carrier = "dummy_tel"
    path = "/telephony/dummy_tel/media/"
    frame_bytes = FRAME_BYTES

    def __init__(self, fake_voice: FakeDummyVendor):
        self.fake_voice = fake_voice
        self.application = URLRouter([media_route(DummyTelConsumer)])
        self._number = None

    def _ring(self) -> Incoming:
        if self._number is None:
            self._number = create_number(self.fake_voice.url)
        leg = f"leg-{uuid.uuid4().hex}"
        call, created = services.record_inbound_call(
            "dummy_tel", leg, number=self._number, from_number="+15550009999", to_number=OUR_NUMBER
        )
        assert created
        return Incoming(str(call.pk), streamtokens.mint(call.pk), leg)

    async def new_call(self) -> Incoming:
        return await sync_to_async(self._ring)()

    def headers(self, incoming, *, authenticated: bool = True, token=None):
        headers = [(b"host", b"voice.example.test")]
        if authenticated:
            headers.append((KEY_HEADER, STREAM_KEY.encode()))
        return headers

    def caller(self, transport, incoming) -> FakeDummyTelCaller:
        return FakeDummyTelCaller(transport.send, transport.receive)

    async def start(self, caller, incoming, **override) -> None:
        await caller.hello(
            override.get("call_id", incoming.call_id),
            override.get("token", incoming.token) or "",
            override.get("carrier_call_id", incoming.carrier_call_id),
        )

    def provider_audio(self) -> int:
        return len(self.fake_voice.audio_in)

    def provider_connections(self) -> int:
        return len(self.fake_voice.connections)

    async def agent_speaks(self) -> None:
        self.fake_voice.speak("Hi.")


@pytest.fixture
def dummy_harness(fake_voice, recordings_dir):
    return DummyTelHarness(fake_voice)
