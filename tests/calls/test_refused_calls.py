"""A call that cannot be connected to its agent ends, with its reason, instead of ringing forever.

Each refusal runs for every carrier (``tests/calls/harness.py``): the webhook has answered and the
carrier opens the media stream with the call's valid token, but the agent was disabled or
deleted meanwhile, its voice architecture cannot run here, a pipeline stage is missing, its key
is gone, or the ``start`` itself is unusable. The stream is refused, no provider socket opens,
and the ``Call`` row is failed with its ``end_reason`` and a readable ``error``, on the timeline
and in the admin.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from django.utils.html import escape

from telephony import closecodes
from tests.calls.harness import ended_call
from tests.fakes import twilio as fake_twilio
from voiceagents.models import Agent, Call, CallEvent, CallEventKind, CallStatus, Credential
from voiceagents.providers import ProviderSpec, providers

pytestmark = pytest.mark.django_db(transaction=True)


async def agent_of(incoming) -> Agent:
    call = await Call.objects.select_related("agent").aget(pk=incoming.call_id)
    return call.agent


async def _disable_agent(incoming, monkeypatch):
    await Agent.objects.filter(pk=(await agent_of(incoming)).pk).aupdate(enabled=False)


async def _delete_agent(incoming, monkeypatch):
    await (await agent_of(incoming)).adelete()


async def _unavailable_mode(incoming, monkeypatch):
    # A voice architecture whose runtime is not available (a plugin registered without one).
    spec = ProviderSpec(id="not_here", name="Not here", vendor="openai")
    providers.register(spec)  # unregistered by the unregister_test_providers fixture
    await Agent.objects.filter(pk=(await agent_of(incoming)).pk).aupdate(provider="not_here")


async def _missing_stage(incoming, monkeypatch):
    await Agent.objects.filter(pk=(await agent_of(incoming)).pk).aupdate(
        provider="pipeline", stt_provider="", tts_provider="elevenlabs", reply_handler="echo"
    )


async def _no_key(incoming, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    await Agent.objects.filter(pk=(await agent_of(incoming)).pk).aupdate(credential=None)
    await Credential.objects.filter(vendor="openai").adelete()


#: name -> (what happens between the webhook and the stream, close code, end reason, error part)
REFUSALS = {
    "agent-disabled": (
        _disable_agent,
        closecodes.CALL_UNAVAILABLE,
        "agent_disabled",
        "was disabled before the call connected",
    ),
    "agent-deleted": (
        _delete_agent,
        closecodes.CALL_UNAVAILABLE,
        "no_agent",
        "agent was deleted",
    ),
    "mode-not-available": (
        _unavailable_mode,
        closecodes.CALL_UNAVAILABLE,
        "provider_not_available",
        "'not_here' cannot take calls on this server",
    ),
    "stage-missing": (
        _missing_stage,
        closecodes.CALL_UNAVAILABLE,
        "stage_not_configured",
        "has no stt service chosen",
    ),
    "no-key": (
        _no_key,
        closecodes.SERVER_ERROR,
        "configuration_error",
        "has no openai credential",
    ),
}


@pytest.fixture
def unregister_test_providers():
    yield
    if providers.find("not_here") is not None:
        providers.unregister("not_here")


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_a_call_refused_at_stream_start_fails_with_its_reason(
    harness, streams, monkeypatch, unregister_test_providers, admin_client, caplog, name
):
    change, code, reason, error = REFUSALS[name]
    incoming = await harness.new_call()
    assert (await Call.objects.aget(pk=incoming.call_id)).status != CallStatus.FAILED
    await change(incoming, monkeypatch)
    with caplog.at_level(logging.INFO):
        _, caller, transport = await streams.call(harness, incoming)
        assert await transport.wait_closed() == code

    call = await ended_call(incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, reason)
    assert error in call.error
    assert call.ended_at is not None
    assert harness.provider_connections() == 0
    events = [e.data async for e in CallEvent.objects.filter(call_id=call.pk)]
    assert {"from": CallStatus.RINGING, "to": CallStatus.FAILED, "reason": reason} in events
    assert any(
        r.levelno >= logging.WARNING and str(call.pk) in r.getMessage() for r in caplog.records
    ), caplog.text
    page = await sync_to_async(admin_client.get)(f"/admin/voiceagents/call/{call.pk}/change/")
    assert escape(error) in page.content.decode()


async def test_a_second_start_of_a_refused_call_changes_nothing(harness, streams, monkeypatch):
    incoming = await harness.new_call()
    await _disable_agent(incoming, monkeypatch)
    _, _, transport = await streams.call(harness, incoming)
    assert await transport.wait_closed() == closecodes.CALL_UNAVAILABLE
    first = await ended_call(incoming.call_id)

    _, _, again = await streams.call(harness, incoming)
    assert await again.wait_closed() in (closecodes.FORBIDDEN, closecodes.CALL_UNAVAILABLE)
    call = await Call.objects.aget(pk=incoming.call_id)
    assert (call.status, call.end_reason, call.ended_at) == (
        CallStatus.FAILED,
        "agent_disabled",
        first.ended_at,
    )


# -- a start refused as unusable, although it carries the call's token -----------------------------


async def test_an_unusable_start_with_the_calls_token_fails_the_call(harness, streams):
    incoming = await harness.new_call()
    accepted, transport = await streams.open(harness, incoming)
    assert accepted
    caller = harness.caller(transport, incoming)
    caller.stream_id = ""  # every carrier's start names its stream; this one does not
    caller.stream_sid = ""
    await harness.start(caller, incoming)
    assert await transport.wait_closed() == closecodes.BAD_START

    call = await ended_call(incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "bad_start")
    assert "start without stream_id" in call.error
    assert harness.provider_connections() == 0


async def test_an_unusable_start_with_a_forged_token_leaves_the_call_alone(harness, streams):
    incoming = await harness.new_call()
    forged = incoming.token[:-2] + ("AA" if not incoming.token.endswith("AA") else "BB")
    accepted, transport = await streams.open(harness, incoming, token=forged)
    assert accepted
    caller = harness.caller(transport, incoming)
    caller.stream_id = caller.stream_sid = ""
    await harness.start(caller, incoming, token=forged)
    assert await transport.wait_closed() == closecodes.BAD_START
    await asyncio.sleep(0.2)
    call = await Call.objects.aget(pk=incoming.call_id)
    assert call.status == CallStatus.RINGING and call.end_reason == ""


async def test_an_unusable_start_replayed_on_a_live_call_does_not_end_it(
    harness, streams, fake_openai
):
    incoming, caller, _ = await streams.call(harness)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    accepted, transport = await streams.open(harness, incoming)
    assert accepted
    replay = harness.caller(transport, incoming)
    replay.stream_id = replay.stream_sid = ""
    await harness.start(replay, incoming)
    assert await transport.wait_closed() == closecodes.BAD_START
    await asyncio.sleep(0.2)
    assert (await Call.objects.aget(pk=incoming.call_id)).status == CallStatus.IN_PROGRESS
    assert not caller.closed.is_set()
    await caller.stop()
    assert (await ended_call(incoming.call_id)).status == CallStatus.COMPLETED


# -- refused after the provider was chosen --------------------------------------------------------


async def test_provisioning_refused_by_the_vendor_fails_the_call(twilio_harness, streams):
    from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI

    with FakeElevenLabsAPI() as el_api:
        incoming = await twilio_harness.new_call()

        def to_elevenlabs():
            credential = Credential(vendor="elevenlabs", label="el", api_base_url=el_api.url)
            credential.secret = API_KEY
            credential.save()
            Agent.objects.filter(calls__pk=incoming.call_id).update(
                provider="elevenlabs_convai", credential=credential, voice="rachel", model=""
            )

        await sync_to_async(to_elevenlabs)()
        el_api.fail_next(401, {"detail": {"status": "invalid_api_key", "message": "Bad key."}})
        _, caller, transport = await streams.call(twilio_harness, incoming)
        await transport.wait_closed()

    call = await ended_call(incoming.call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_error")
    assert call.error


# -- a repeated webhook after the agent went away --------------------------------------------------


async def test_a_repeated_twilio_webhook_after_the_agent_was_disabled_fails_the_call(
    create_call, client
):
    from .conftest import AUTH_TOKEN

    setup = await create_call()
    params = fake_twilio.voice_params(
        CallSid=setup.call.carrier_call_id, AccountSid="AC" + "0" * 32, To=setup.call.to_number
    )
    await Agent.objects.filter(pk=setup.agent.pk).aupdate(enabled=False)
    response = await sync_to_async(fake_twilio.signed_post)(
        client, "/telephony/twilio/voice/", params, token=AUTH_TOKEN
    )
    assert response.status_code == 200
    assert b"<Say" in response.content and b"<Stream" not in response.content
    call = await Call.objects.aget(pk=setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "agent_disabled")
    assert "apology" in call.error
    assert await CallEvent.objects.filter(call=call, kind=CallEventKind.STATUS).aexists()
