"""Outbound Twilio calls end to end: an admin places the call from the agent page, the fake
Twilio (tests/fakes/twilio_api.py) answers it the way Twilio does (signed callbacks, TwiML fetched
from our voice webhook, the media stream opened to our real uvicorn server, the async AMD
verdict), and the agent, on the fake OpenAI Realtime, leaves a voicemail or talks."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from tests.calls.harness import ended_call
from tests.fakes.openai_realtime import ScriptedResponse
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio_api import FakeTwilioAPI
from voiceagents.models import Agent, Call, CallEvent, CallStatus, Credential, PhoneNumber
from voiceagents.outbound import place_call

pytestmark = pytest.mark.django_db(transaction=True)

OUR_NUMBER = "+14155550199"
CALLEE = "+14155550123"
VOICEMAIL = "Hi, this is Acme about your appointment. Please call us back."
#: A machine's greeting: 400 ms of μ-law that must never reach the provider.
GREETING = bytes([0x55, 0xD5]) * 1600


@pytest.fixture
def twilio_api():
    with FakeTwilioAPI() as api:
        yield api


@pytest.fixture
def public_server(asgi_server, voiceagents_settings, recordings_dir):
    """Our server at a public URL the fake carrier reaches (plain http/ws on loopback)."""
    voiceagents_settings["PUBLIC_URL"] = asgi_server
    return asgi_server


def _agent(openai_url: str, api_url: str, **fields) -> tuple[Agent, PhoneNumber]:
    openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
    openai.secret = "sk-test-openai"
    openai.save()
    twilio = Credential(
        vendor="twilio", label="twilio", data={"account_sid": ACCOUNT_SID}, api_base_url=api_url
    )
    twilio.secret = AUTH_TOKEN
    twilio.save()
    values = {
        "name": "Front desk",
        "slug": "front-desk",
        "system_prompt": "You work for {company}.",
        "first_message": "Hello from {company}!",
        "variables": {"company": "Acme"},
        "credential": openai,
        "machine_action": "voicemail",
        "voicemail_message": VOICEMAIL,
    }
    values.update(fields)
    agent = Agent.objects.create(**values)
    number = PhoneNumber.objects.create(
        number=OUR_NUMBER, carrier="twilio", credential=twilio, agent=agent
    )
    return agent, number


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


async def _place_from_admin(admin_client, agent, number, **data):
    url = reverse("admin:voiceagents_agent_call_number", args=[agent.pk])
    form = {"to": CALLEE, "from_number": str(number.pk), "first_message": "", "variables": ""}
    form.update(data)
    return await sync_to_async(admin_client.post)(url, form)


async def _answered(api: FakeTwilioAPI, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not api.answered:
        assert loop.time() < deadline, "the fake Twilio answered no call"
        await asyncio.sleep(0.02)
    (call,) = api.answered.values()
    await asyncio.to_thread(call.started.wait, timeout)
    return call


async def test_admin_call_answered_by_a_machine_leaves_the_voicemail_and_ends(
    public_server, admin_client, twilio_api, fake_openai
):
    agent, number = await sync_to_async(_agent)(fake_openai.url, twilio_api.url)
    twilio_api.answer_as = "machine_end_beep"
    twilio_api.callee_audio = GREETING

    response = await _place_from_admin(admin_client, agent, number)

    call = await Call.objects.aget()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:voiceagents_call_change", args=[call.pk])
    # The request named the row: it existed, queued, before Twilio was asked.
    (form,) = twilio_api.calls
    query = f"?call_id={call.pk}"
    assert form["To"] == [CALLEE] and form["From"] == [OUR_NUMBER]
    assert form["Url"] == [f"{public_server}/telephony/twilio/voice/{query}"]
    assert form["StatusCallback"] == [f"{public_server}/telephony/twilio/status/{query}"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["MachineDetection"] == ["DetectMessageEnd"]  # the voicemail follows the beep
    assert form["AsyncAmd"] == ["true"]
    assert form["AsyncAmdStatusCallback"] == [f"{public_server}/telephony/twilio/amd/{query}"]
    assert call.direction == "outbound" and call.to_number == CALLEE

    answered = await _answered(twilio_api)
    await asyncio.to_thread(answered.wait, 30)
    assert answered.parameters["call_id"] == str(call.pk)
    assert ("amd", 204) in answered.callbacks
    assert answered.failed_callbacks() == []

    # The agent said the voicemail message, never its greeting, and its audio reached the carrier.
    instructions = [e["response"]["instructions"] for e in fake_openai.events_of("response.create")]
    assert len(instructions) == 1 and VOICEMAIL in instructions[0]
    assert len(answered.caller.media_in) >= 1600
    # The machine's greeting was not passed on (a provider would have answered it).
    assert bytes(fake_openai.session.audio_in) == b""

    call = await ended_call(call.pk, timeout=10)
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "voicemail"
    assert call.answered_by == "machine_end_beep"
    assert call.carrier_call_id == answered.call_sid
    assert call.metrics["frames_in"] >= len(GREETING) // 160  # recorded all the same
    amd = [e.data async for e in CallEvent.objects.filter(call=call) if "amd" in e.data]
    assert {"amd": "machine_end_beep", "verdict": "machine"} in [
        {k: d[k] for k in ("amd", "verdict")} for d in amd
    ]

    # The call's page, where the admin landed, tells the story.
    page = await sync_to_async(admin_client.get)(response["Location"])
    text = page.content.decode()
    assert "voicemail left" in text
    assert "Answering-machine detection: a machine answered (machine_end_beep)" in text


async def test_admin_call_answered_by_a_person_greets_with_the_calls_message_and_talks(
    public_server, admin_client, twilio_api, fake_openai
):
    agent, number = await sync_to_async(_agent)(fake_openai.url, twilio_api.url)
    twilio_api.answer_as = "human"
    twilio_api.callee_audio = GREETING  # "Hello?" before the verdict: not passed on

    response = await _place_from_admin(
        admin_client,
        agent,
        number,
        first_message="Hi {name}, this is {company}.",
        variables='{"name": "Ada"}',
    )
    assert response.status_code == 302
    answered = await _answered(twilio_api)

    # The greeting waited for the verdict, then played to the callee.
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"), timeout=10)
    first = fake_openai.events_of("response.create")[0]["response"]["instructions"]
    assert "Hi Ada, this is Acme." in first
    await fake_openai.wait_for(lambda: len(answered.caller.media_in) >= 1600, timeout=10)
    assert bytes(fake_openai.session.audio_in) == b""

    # Now the conversation runs: the callee's words reach the model, its answer the callee.
    words = bytes(range(256)) * 5
    await asyncio.to_thread(answered.say, words)
    await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) >= len(words), timeout=10)
    assert bytes(fake_openai.session.audio_in) == words
    heard = len(answered.caller.media_in)
    await fake_openai.respond(ScriptedResponse(audio=b"\x2a" * 800, transcript="Sure, Ada."))
    await fake_openai.wait_for(lambda: len(answered.caller.media_in) >= heard + 800, timeout=10)

    answered.hang_up()
    await asyncio.to_thread(answered.wait, 30)
    call = await ended_call((await Call.objects.aget()).pk, timeout=10)
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "callee_hangup"
    assert call.answered_by == "human"
    assert call.direction == "outbound"
    assert answered.failed_callbacks() == []


# -- Telnyx ------------------------------------------------------------------------------------


@pytest.fixture
def telnyx_api(monkeypatch):
    from tests.fakes import telnyx as fake_telnyx

    for name in ("TELNYX_PUBLIC_KEY", "TELNYX_API_KEY", "TELNYX_API_URL"):
        monkeypatch.delenv(name, raising=False)
    with fake_telnyx.FakeTelnyxAPI() as api:
        api.answer_key = fake_telnyx.keypair("outbound acceptance")
        yield api


def _telnyx_agent(openai_url: str, api) -> tuple[Agent, PhoneNumber]:
    from tests.fakes import telnyx as fake_telnyx

    agent, _ = _agent(openai_url, "http://127.0.0.1:9")
    PhoneNumber.objects.all().delete()
    telnyx = Credential(
        vendor="telnyx",
        label="telnyx",
        data={
            "connection_id": fake_telnyx.CONNECTION_ID,
            "webhook_public_key": api.answer_key.public_b64,
        },
        api_base_url=api.url,
    )
    telnyx.secret = fake_telnyx.API_KEY
    telnyx.save()
    number = PhoneNumber.objects.create(
        number=fake_telnyx.OUR_NUMBER,
        carrier="telnyx",
        credential=telnyx,
        agent=agent,
        carrier_data={"codec": "PCMU"},
    )
    return agent, number


async def test_admin_call_through_telnyx_answered_by_a_machine_leaves_the_voicemail(
    public_server, admin_client, telnyx_api, fake_openai
):
    agent, number = await sync_to_async(_telnyx_agent)(fake_openai.url, telnyx_api)
    telnyx_api.answer_as = "machine"
    telnyx_api.callee_audio = GREETING

    response = await _place_from_admin(admin_client, agent, number)

    call = await Call.objects.aget()
    assert response.status_code == 302
    (dial,) = telnyx_api.of("dial")
    assert dial.body["answering_machine_detection"] == "detect_beep"
    assert dial.body["webhook_url"] == f"{public_server}/telephony/telnyx/webhook/"
    assert call.carrier_call_id == dial.call_control_id
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not telnyx_api.answered:
        assert loop.time() < deadline, "the fake Telnyx answered no dial"
        await asyncio.sleep(0.02)
    (answered,) = telnyx_api.answered.values()
    await asyncio.to_thread(answered.wait, 30)
    assert answered.failed_deliveries() == []
    assert [c.action for c in telnyx_api.commands] == ["dial", "hangup"]

    (create,) = fake_openai.events_of("response.create")
    assert VOICEMAIL in create["response"]["instructions"]
    assert len(answered.caller.media_in) >= 1600
    assert bytes(fake_openai.session.audio_in) == b""
    call = await ended_call(call.pk, timeout=10)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "voicemail")
    assert call.answered_by == "machine"


async def test_admin_call_through_telnyx_answered_by_a_person_greets(
    public_server, admin_client, telnyx_api, fake_openai
):
    agent, number = await sync_to_async(_telnyx_agent)(fake_openai.url, telnyx_api)
    telnyx_api.answer_as = "human"

    assert (await _place_from_admin(admin_client, agent, number)).status_code == 302
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not telnyx_api.answered:
        assert loop.time() < deadline, "the fake Telnyx answered no dial"
        await asyncio.sleep(0.02)
    (answered,) = telnyx_api.answered.values()
    await asyncio.to_thread(answered.started.wait, 10)
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"), timeout=10)
    first = fake_openai.events_of("response.create")[0]["response"]["instructions"]
    assert "Hello from Acme!" in first
    await fake_openai.wait_for(lambda: len(answered.caller.media_in) >= 1600, timeout=10)

    answered.hang_up()
    await asyncio.to_thread(answered.wait, 30)
    assert answered.failed_deliveries() == []
    call = await ended_call((await Call.objects.aget()).pk, timeout=10)
    assert (call.status, call.answered_by) == (CallStatus.COMPLETED, "human")
    assert call.end_reason == "callee_hangup"


@pytest.mark.parametrize(
    "outcome, status",
    [("busy", CallStatus.BUSY), ("no-answer", CallStatus.NO_ANSWER), ("failed", CallStatus.FAILED)],
)
async def test_a_call_nobody_answers_ends_with_twilios_status(
    public_server, twilio_api, fake_openai, outcome, status
):
    agent, _ = await sync_to_async(_agent)(fake_openai.url, twilio_api.url)
    twilio_api.answer_as = outcome

    call = await sync_to_async(place_call)(agent, CALLEE)
    (answered,) = twilio_api.answered.values()
    await asyncio.to_thread(answered.wait, 20)
    assert [name for name, _ in answered.callbacks] == [
        "status:initiated",
        "status:ringing",
        f"status:{outcome}",
    ]
    call = await ended_call(call.pk)
    assert call.status == status
    assert call.end_reason == {"busy": "busy", "no-answer": "no_answer"}.get(
        outcome, "carrier_failed"
    )
    assert fake_openai.connection_attempts == 0
