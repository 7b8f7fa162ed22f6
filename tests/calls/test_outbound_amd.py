"""The answering-machine gate of outbound calls, through the media consumers and the session:
the verdict from the carriers' signed webhooks (in this process: the in-memory channel layer
carries the control plane's ``amd`` command), the timeout, the hang-up action, a verdict that
came before the stream, and a Telnyx call placed, answered and streamed end to end."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from twilio.request_validator import RequestValidator

from tests.calls.conftest import AUTH_TOKEN, _create_call
from tests.calls.harness import ended_call
from tests.fakes import telnyx as fake
from voiceagents.models import Agent, Call, CallStatus, Credential, PhoneNumber
from voiceagents.outbound import place_call

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC_URL = "https://voice.example.test"
FORM = "application/x-www-form-urlencoded"
ACCOUNT_SID = "AC" + "0" * 32
CALLEE = "+14155550123"
VOICEMAIL = "Please call Acme back."
#: 200 ms of μ-law "speech".
WORDS = bytes([0x55, 0xD5]) * 800


def _outbound(openai_url: str, **agent_fields):
    """An outbound Twilio call as place_call and the voice webhook leave it."""
    setup = _create_call(openai_url, **agent_fields)
    call = setup.call
    call.direction = "outbound"
    call.status = CallStatus.RINGING
    call.outbound_options = {
        "amd": True,
        "machine_action": setup.agent.machine_action,
        "first_message": None,
        "variables": {},
    }
    call.save()
    return setup


@pytest.fixture
def outbound(fake_openai, recordings_dir):
    async def create(**agent_fields):
        return await sync_to_async(_outbound)(fake_openai.url, **agent_fields)

    return create


async def _twilio_amd(async_client, call, answered_by: str):
    path = f"/telephony/twilio/amd/?call_id={call.pk}"
    params = {"AccountSid": ACCOUNT_SID, "CallSid": call.carrier_call_id, "AnsweredBy": answered_by}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, params)
    response = await async_client.post(
        path, urlencode(params), content_type=FORM, headers={"x-twilio-signature": signature}
    )
    assert response.status_code == 204


async def _started(connect_caller, setup):
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    return caller


async def test_machine_with_hangup_action_ends_the_call_without_a_word(
    outbound, connect_caller, fake_openai, async_client
):
    setup = await outbound(machine_action="hangup")
    caller = await _started(connect_caller, setup)
    await fake_openai.wait_for(lambda: fake_openai.events_of("session.update"))
    await caller.stream_audio(WORDS, realtime=False)
    await _twilio_amd(async_client, setup.call, "machine_start")
    await caller.wait_closed()

    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "machine_hangup")
    assert fake_openai.events_of("response.create") == []
    assert bytes(fake_openai.session.audio_in) == b""
    assert caller.media_in == b""


async def test_a_verdict_stored_before_the_stream_started_is_acted_on(
    outbound, connect_caller, fake_openai
):
    setup = await outbound(machine_action="hangup")
    await Call.objects.filter(pk=setup.call.pk).aupdate(answered_by="fax")
    caller = await _started(connect_caller, setup)
    await caller.wait_closed()
    call = await ended_call(setup.call.pk)
    assert call.end_reason == "machine_hangup"
    assert fake_openai.events_of("response.create") == []


async def test_without_a_verdict_the_agent_greets_after_the_timeout(
    outbound, connect_caller, fake_openai, async_client, voiceagents_settings
):
    voiceagents_settings["OUTBOUND_AMD_TIMEOUT"] = 2.0
    setup = await outbound()
    caller = await _started(connect_caller, setup)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await fake_openai.wait_for(lambda: fake_openai.events_of("session.update"))
    await caller.stream_audio(WORDS, realtime=False)  # held back: not passed on
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"), timeout=10)
    assert loop.time() - began >= 1.9
    assert (
        "Hello from Acme!"
        in fake_openai.events_of("response.create")[0]["response"]["instructions"]
    )
    assert bytes(fake_openai.session.audio_in) == b""
    await caller.stream_audio(WORDS, realtime=False)  # now the conversation runs
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) >= len(WORDS))
    # A verdict after the timeout changes nothing: the conversation has begun.
    await _twilio_amd(async_client, setup.call, "machine_end_beep")
    await asyncio.sleep(0.3)
    await caller.stop()
    await caller.wait_closed()
    call = await ended_call(setup.call.pk)
    assert call.end_reason == "callee_hangup"
    assert call.answered_by == "machine_end_beep"


async def test_human_verdict_greets_at_once(outbound, connect_caller, fake_openai, async_client):
    setup = await outbound()
    caller = await _started(connect_caller, setup)
    await fake_openai.wait_for(lambda: fake_openai.events_of("session.update"))
    await asyncio.sleep(0.2)
    assert fake_openai.events_of("response.create") == []  # held for the verdict
    await _twilio_amd(async_client, setup.call, "human")
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"), timeout=3)
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    await caller.stop()
    await caller.wait_closed()


# -- Telnyx ------------------------------------------------------------------------------------


KEY = fake.keypair("outbound telnyx")


def _telnyx_agent(openai_url: str, api_url: str) -> Agent:
    openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
    openai.secret = "sk-test-openai"
    openai.save()
    telnyx = Credential(
        vendor="telnyx",
        label="telnyx",
        data={"webhook_public_key": KEY.public_b64, "connection_id": fake.CONNECTION_ID},
        api_base_url=api_url,
    )
    telnyx.secret = fake.API_KEY
    telnyx.save()
    agent = Agent.objects.create(
        name="Front desk",
        slug="front-desk",
        system_prompt="You work for Acme.",
        first_message="Hello from Acme!",
        credential=openai,
        machine_action="voicemail",
        voicemail_message=VOICEMAIL,
    )
    PhoneNumber.objects.create(
        number=fake.OUR_NUMBER,
        carrier="telnyx",
        credential=telnyx,
        agent=agent,
        carrier_data={"codec": "PCMU"},
    )
    return agent


class TelnyxStream(fake.FakeTelnyxCaller):
    def __init__(self, communicator: WebsocketCommunicator, **kwargs):
        self.communicator = communicator
        super().__init__(self._send, self._receive, **kwargs)

    async def _send(self, text: str):
        await self.communicator.send_to(text_data=text)

    async def _receive(self, timeout: float):
        message = await self.communicator.receive_output(timeout)
        return None if message["type"] == "websocket.close" else message.get("text")


async def test_telnyx_call_placed_answered_by_a_machine_leaves_the_voicemail(
    telnyx_api, fake_openai, recordings_dir, async_client, monkeypatch
):
    from telephony.routing import websocket_urlpatterns

    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL"):
        monkeypatch.delenv(name, raising=False)
    agent = await sync_to_async(_telnyx_agent)(fake_openai.url, telnyx_api.url)
    call = await sync_to_async(place_call)(agent, CALLEE)
    (dial,) = telnyx_api.of("dial")
    ccid, body = dial.call_control_id, dial.body
    assert body["answering_machine_detection"] == "detect_beep"

    # Telnyx: the callee answers; the stream the dial asked for opens with its token.
    answered = fake.webhook(
        "call.answered",
        fake.call_payload(ccid, direction="outgoing", client_state=body["client_state"], to=CALLEE),
    )
    assert (await fake.post(async_client, answered, KEY)).status_code == 200
    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns),
        "/telephony/telnyx/media/",
        headers=[
            (b"host", b"voice.example.test"),
            (b"x-telnyx-streaming-auth-token", body["stream_auth_token"].encode()),
        ],
    )
    accepted, _ = await communicator.connect(timeout=10)
    assert accepted
    stream = TelnyxStream(communicator, call_control_id=ccid, bytes_per_ms=8)
    try:
        await stream.connected(body["stream_auth_token"])
        await stream.start(body["client_state"], encoding="PCMU", sample_rate=8000)
        await fake_openai.wait_for(lambda: fake_openai.events_of("session.update"))
        await stream.stream_audio(WORDS, realtime=False)
        detection = fake.webhook(
            "call.machine.detection.ended",
            fake.call_payload(
                ccid, direction="outgoing", client_state=body["client_state"], result="machine"
            ),
        )
        assert (await fake.post(async_client, detection, KEY)).status_code == 200
        await asyncio.wait_for(stream.closed.wait(), 15)
    finally:
        await stream.aclose()
        await communicator.disconnect()

    (create,) = fake_openai.events_of("response.create")
    assert VOICEMAIL in create["response"]["instructions"]
    assert len(stream.media_in) >= 1600
    assert bytes(fake_openai.session.audio_in) == b""
    hangup = fake.call_hangup(ccid, "normal_clearing", "caller")
    assert (await fake.post(async_client, hangup, KEY)).status_code == 200
    call = await ended_call(call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "voicemail")
    assert call.answered_by == "machine"


# -- ElevenLabs Conversational AI: the agent greets as it connects ------------------------------


@pytest.fixture
def el_api():
    from tests.fakes.elevenlabs_api import FakeElevenLabsAPI

    with FakeElevenLabsAPI() as api:
        yield api


@pytest.fixture
async def el(el_api):
    from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI

    async with FakeElevenLabsConvAI(el_api) as fake_el:
        yield fake_el


def _to_elevenlabs(agent_pk, api_url: str) -> None:
    from tests.fakes.elevenlabs_api import API_KEY

    credential = Credential(vendor="elevenlabs", label="ElevenLabs", api_base_url=api_url)
    credential.secret = API_KEY
    credential.save()
    Agent.objects.filter(pk=agent_pk).update(
        provider="elevenlabs_convai", credential=credential, voice="rachel", model=""
    )


@pytest.mark.parametrize("answered_by", ["human", "machine_end_beep"])
async def test_elevenlabs_opens_only_after_the_verdict(
    outbound, connect_caller, el, el_api, async_client, answered_by
):
    from tests.fakes.elevenlabs_convai import ScriptedReply

    setup = await outbound(machine_action="voicemail", voicemail_message=VOICEMAIL)
    await sync_to_async(_to_elevenlabs)(setup.agent.pk, el_api.url)
    greeting = bytes([0x66]) * 1600
    el.replies.append(ScriptedReply(greeting, "Hello from Acme!"))
    caller = await _started(connect_caller, setup)
    await asyncio.sleep(0.5)
    assert el.conversations == []  # it would greet whoever answered
    await _twilio_amd(async_client, setup.call, answered_by)
    if answered_by == "human":
        await el.wait_for(lambda: el.conversations and el.conversation.init, timeout=10)
        await el.wait_for(lambda: len(caller.media_in) >= len(greeting), timeout=10)
        await caller.stop()
        await caller.wait_closed()
        assert (await ended_call(setup.call.pk)).end_reason == "callee_hangup"
    else:
        # No voicemail on this mode (its first message cannot be replaced): hung up, unheard.
        await caller.wait_closed()
        call = await ended_call(setup.call.pk)
        assert call.end_reason == "machine_hangup"
        assert el.conversations == [] and caller.media_in == b""


# -- the pipeline: the voicemail goes through its TTS --------------------------------------------


@pytest.fixture
async def pipeline_stages(voiceagents_settings):
    from tests.fakes import deepgram as fake_deepgram
    from tests.fakes import elevenlabs_api as fake_elevenlabs

    async with fake_deepgram.FakeDeepgram() as deepgram:
        with fake_elevenlabs.FakeElevenLabsAPI() as tts:
            voiceagents_settings.update(DEEPGRAM_URL=deepgram.url, ELEVENLABS_URL=tts.url)
            yield deepgram, tts


def _to_pipeline(agent_pk) -> None:
    from tests.fakes import elevenlabs_api as fake_elevenlabs

    def credential(vendor: str, secret: str) -> Credential:
        made = Credential(vendor=vendor, label=f"{vendor} key")
        made.secret = secret
        made.save()
        return made

    agent = Agent.objects.get(pk=agent_pk)
    agent.provider = "pipeline"
    agent.credential = None
    agent.stt_provider = "deepgram"
    agent.stt_credential = credential("deepgram", "dg-test-key")
    agent.tts_provider = "elevenlabs"
    agent.tts_credential = credential("elevenlabs", fake_elevenlabs.API_KEY)
    agent.reply_handler = ""
    agent.reply_prompt = "Be brief."
    agent.reply_credential = credential("openai", "sk-test-chat")
    agent.full_clean()
    agent.save()


async def test_pipeline_leaves_the_voicemail_through_its_tts(
    outbound, connect_caller, pipeline_stages, async_client
):
    deepgram, tts = pipeline_stages
    setup = await outbound(machine_action="voicemail", voicemail_message=VOICEMAIL)
    await sync_to_async(_to_pipeline)(setup.agent.pk)
    caller = await _started(connect_caller, setup)
    await caller.stream_audio(WORDS, realtime=False)  # the machine's greeting
    await asyncio.sleep(0.3)
    assert tts.tts_requests == []  # no greeting for whoever answered
    await _twilio_amd(async_client, setup.call, "machine_end_silence")
    await caller.wait_closed(timeout=15)

    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "voicemail")
    assert [r.json.get("text") for r in tts.tts_requests] == [VOICEMAIL]
    assert len(caller.media_in) >= 1600
    assert sum(len(f) for stream in deepgram.streams for f in stream.frames) == 0
