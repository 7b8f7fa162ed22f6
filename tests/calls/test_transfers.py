"""Transfers carried out on the carrier: the agent's ``transfer_call`` and an operator's transfer.

Each carrier's REST API is a loopback fake speaking its protocol: Twilio's call update (a TwiML
``<Dial>``; like Twilio, the fake then ends the replaced stream with ``stop``) and Telnyx's
``actions/transfer``. The model is the fake OpenAI Realtime (function calling) or the fake
ElevenLabs ConvAI (client tools).
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest

from tests.calls.conftest import AUTH_TOKEN
from tests.calls.harness import ended_call
from tests.calls.lines import Line
from tests.calls.test_pipeline_calls import (  # noqa: F401 - the pipeline stages' fixtures
    chat,
    deepgram,
    elevenlabs,
    openai_audio,
    stage_urls,
)
from tests.fakes import telnyx as fake_telnyx
from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI, ScriptedReply
from tests.fakes.twilio_api import FakeTwilioAPI
from voiceagents.call.control import asend_call_command
from voiceagents.models import Agent, Call, CallEvent, CallStatus

pytestmark = pytest.mark.django_db(transaction=True)

TARGET = "+14155550123"
TWILIO_NUMBER = "+14155550199"  # tests/calls/conftest.py


@pytest.fixture
def twilio_api(settings):
    with FakeTwilioAPI(account_sid="AC" + "0" * 32, auth_token=AUTH_TOKEN) as api:
        settings.VOICEAGENTS = {**settings.VOICEAGENTS, "TWILIO_API_URL": api.url}
        yield api


class Carrier:
    """One carrier's REST side, as the tests look at it."""

    def __init__(self, name: str, twilio_api: FakeTwilioAPI, telnyx_api):
        self.name, self.twilio_api, self.telnyx_api = name, twilio_api, telnyx_api

    def transfers(self) -> list[dict]:
        """``{"to", "from"}`` of each transfer the carrier was asked for."""
        if self.name == "twilio":
            found = []
            for _, form in self.twilio_api.updates:
                dial = ET.fromstring(form["Twiml"][0]).find("Dial")
                found.append({"to": dial.find("Number").text, "from": dial.get("callerId")})
            return found
        return [
            {"to": c.body["to"], "from": c.body.get("from")} for c in self.telnyx_api.of("transfer")
        ]

    def refuse_next(self) -> str:
        """The next transfer request is refused; the vendor's message, as the model should hear."""
        if self.name == "twilio":
            self.twilio_api.fail_update(400, 21220, "Call is not in-progress. Cannot redirect.")
            return "Call is not in-progress. Cannot redirect."
        self.telnyx_api.fail("transfer", 422, code="90046", detail="Destination not permitted.")
        return "Destination not permitted."

    @property
    def our_number(self) -> str:
        return TWILIO_NUMBER if self.name == "twilio" else fake_telnyx.OUR_NUMBER


def stop_stream_on_update(twilio_api: FakeTwilioAPI, caller) -> None:
    """Like Twilio: the update replaces the TwiML, so the stream gets ``stop`` and closes."""
    loop = asyncio.get_running_loop()
    twilio_api.on_update = lambda sid, form: loop.call_soon_threadsafe(
        lambda: asyncio.ensure_future(caller.stop())
    )


async def _set_agent(agent_pk, fields):
    if fields:
        await Agent.objects.filter(pk=agent_pk).aupdate(**fields)


@pytest.fixture
def carrier(harness, twilio_api, telnyx_api):
    return Carrier(harness.carrier, twilio_api, telnyx_api)


@pytest.fixture
def line(harness, streams):
    return Line(
        harness.carrier, harness, streams, _set_agent, "PCMU" if harness.carrier == "telnyx" else ""
    )


async def transfer_events(call_id) -> list[dict]:
    return [e.data async for e in CallEvent.objects.filter(call_id=call_id, kind="transfer")]


# -- OpenAI Realtime: function calling ----------------------------------------------------------


async def test_an_allowed_transfer_is_carried_out_by_the_carrier(line, carrier, fake_openai):
    call_id, caller = await line.call(transfer_allowlist=[TARGET])
    if carrier.name == "twilio":
        stop_stream_on_update(carrier.twilio_api, caller)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    call_ref = await fake_openai.function_call("transfer_call", {"number": "+1 (415) 555-0123"})

    (output,) = await fake_openai.wait_for(fake_openai.function_outputs)
    assert output["call_id"] == call_ref
    assert output["output"] == f"The call is now transferred to {TARGET}."
    assert carrier.transfers() == [{"to": TARGET, "from": carrier.our_number}]
    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "transferred")
    (event,) = await transfer_events(call_id)
    assert event["number"] == TARGET and event["done"] is True and event["by"] == "agent"
    if carrier.name == "telnyx":
        # Our leg now carries the caller to the target: it must not be hung up.
        await asyncio.sleep(0.2)
        assert carrier.telnyx_api.actions().count("hangup") == 0


async def test_twilio_ending_the_stream_before_its_rest_answer_still_ends_it_transferred(
    twilio_harness, streams, twilio_api, fake_openai
):
    line = Line("twilio", twilio_harness, streams, _set_agent)
    call_id, caller = await line.call(transfer_allowlist=[TARGET])
    stop_stream_on_update(twilio_api, caller)
    twilio_api.answer_delay = 0.5  # the stop is read well before the REST answer
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await fake_openai.function_call("transfer_call", {"number": TARGET})
    call = await ended_call(call_id, timeout=10)
    assert call.end_reason == "transferred"
    (event,) = await transfer_events(call_id)
    assert event["done"] is True


async def test_a_carrier_refusal_is_told_to_the_model_and_the_call_goes_on(
    line, carrier, fake_openai
):
    call_id, caller = await line.call(transfer_allowlist=[TARGET])
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    message = carrier.refuse_next()
    await fake_openai.function_call("transfer_call", {"number": TARGET})

    (output,) = await fake_openai.wait_for(fake_openai.function_outputs)
    error = json.loads(output["output"])["error"]
    assert "did not go through" in error and message in error
    # The model answers the error and the caller hears it: the call goes on.
    heard = len(caller.media_in)
    await fake_openai.wait_for(lambda: len(caller.media_in) > heard + 800)
    assert (await Call.objects.aget(pk=call_id)).ended_at is None
    await caller.stop()
    call = await ended_call(call_id)
    assert call.end_reason in ("caller_hangup", "stream_stopped")  # Twilio's, Telnyx's stop
    (event,) = await transfer_events(call_id)
    assert event["done"] is False and message in event["error"]
    assert len(carrier.transfers()) == 1


async def test_a_number_off_the_allowlist_is_refused_without_a_carrier_request(
    line, carrier, fake_openai
):
    call_id, caller = await line.call(transfer_allowlist=[TARGET])
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await fake_openai.function_call("transfer_call", {"number": "+19005550000"})

    (output,) = await fake_openai.wait_for(fake_openai.function_outputs)
    assert "not a number this line may transfer to" in json.loads(output["output"])["error"]
    heard = len(caller.media_in)
    await fake_openai.wait_for(lambda: len(caller.media_in) > heard + 800)  # the call goes on
    assert carrier.transfers() == []
    await caller.stop()
    await ended_call(call_id)
    (event,) = await transfer_events(call_id)
    assert event["allowed"] is False and event["number"] == "+19005550000"


# -- operators, through the control plane -------------------------------------------------------


async def test_an_operator_transfer_to_an_allowed_number(line, carrier, fake_openai, settings):
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "TRANSFER_ALLOWED_NUMBERS": [TARGET]}
    call_id, caller = await line.call()  # the agent itself may not transfer anywhere
    if carrier.name == "twilio":
        stop_stream_on_update(carrier.twilio_api, caller)
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asend_call_command(call_id, "transfer", number=TARGET)

    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "transferred")
    assert carrier.transfers() == [{"to": TARGET, "from": carrier.our_number}]
    (event,) = await transfer_events(call_id)
    assert event["by"] == "operator" and event["done"] is True


async def test_an_operator_transfer_elsewhere_is_refused_without_a_carrier_request(
    line, carrier, fake_openai
):
    call_id, caller = await line.call(transfer_allowlist=[TARGET])
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asend_call_command(call_id, "transfer", number="+19005550000")
    await asend_call_command(call_id, "say", text="Still here.")  # handled after the transfer
    await fake_openai.wait_for(
        lambda: any(
            "Still here." in (e.get("response") or {}).get("instructions", "")
            for e in fake_openai.events_of("response.create")
        )
    )
    assert carrier.transfers() == []
    assert (await Call.objects.aget(pk=call_id)).ended_at is None
    await caller.stop()
    await ended_call(call_id)
    (event,) = await transfer_events(call_id)
    assert event["by"] == "operator" and event["allowed"] is False


async def test_an_operator_say_reaches_the_provider_and_the_timeline(line, fake_openai):
    call_id, caller = await line.call()
    await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set())
    await asend_call_command(call_id, "say", text="Your table is ready.")
    request = await fake_openai.wait_for(
        lambda: [
            e
            for e in fake_openai.events_of("response.create")
            if "Your table is ready." in (e.get("response") or {}).get("instructions", "")
        ]
    )
    assert request
    await caller.stop()
    await ended_call(call_id)
    events = [e.data async for e in CallEvent.objects.filter(call_id=call_id, kind="other")]
    assert {"action": "say", "by": "operator", "text": "Your table is ready."} in events


# -- ElevenLabs ConvAI: client tools ----------------------------------------------------------------


@pytest.fixture
def el_api():
    with FakeElevenLabsAPI() as api:
        yield api


@pytest.fixture
async def el(el_api):
    async with FakeElevenLabsConvAI(el_api) as fake:
        yield fake


@pytest.fixture
def el_line(harness, streams, el_api, el):
    from tests.calls.test_elevenlabs_convai_calls import configure

    return Line(
        harness.carrier,
        harness,
        streams,
        configure(el_api),
        "PCMU" if harness.carrier == "telnyx" else "",
    )


async def test_elevenlabs_an_allowed_transfer_is_carried_out(el_line, carrier, el):
    call_id, caller = await el_line.call(transfer_allowlist=[TARGET])
    if carrier.name == "twilio":
        stop_stream_on_update(carrier.twilio_api, caller)
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    await el.tool_call("transfer_call", {"number": TARGET}, "toolu_t")
    (result,) = await el.wait_for(el.tool_results)
    assert result["tool_call_id"] == "toolu_t" and result["is_error"] is False
    assert carrier.transfers() == [{"to": TARGET, "from": carrier.our_number}]
    call = await ended_call(call_id)
    assert call.end_reason == "transferred"


async def test_elevenlabs_a_carrier_refusal_is_told_and_the_call_goes_on(el_line, carrier, el):
    call_id, caller = await el_line.call(transfer_allowlist=[TARGET])
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    message = carrier.refuse_next()
    await el.tool_call("transfer_call", {"number": TARGET}, "toolu_t")
    (result,) = await el.wait_for(el.tool_results)
    assert result["is_error"] is True and message in result["result"]
    el.replies.append(ScriptedReply(bytes([0x47]) * 800, "Sorry, that line is busy."))
    await el.user_speaks("So?")
    await el.wait_for(lambda: bytes([0x47]) * 160 in bytes(caller.media_in))
    await caller.stop()
    call = await ended_call(call_id)
    assert call.end_reason != "transferred"
    (event,) = await transfer_events(call_id)
    assert event["done"] is False


async def test_elevenlabs_an_operator_say_reaches_the_agent(el_line, el):
    call_id, caller = await el_line.call()
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    await asend_call_command(call_id, "say", text="Your table is ready.")
    (message,) = await el.wait_for(
        lambda: [m for m in el.of_type("user_message") if "Your table is ready." in m["text"]]
    )
    assert message["text"].startswith("Say exactly the following to the caller")
    await caller.stop()
    await ended_call(call_id)


# -- the pipeline: its language model's function calling, and say --------------------------------


async def test_pipeline_the_llm_transfers_to_an_allowed_number(
    twilio_harness,
    streams,
    stage_urls,  # noqa: F811 - the imported fixtures
    deepgram,  # noqa: F811
    chat,  # noqa: F811
    elevenlabs,  # noqa: F811
    twilio_api,  # after stage_urls: it replaces VOICEAGENTS with a copy that has them
):
    from tests.calls.test_pipeline_calls import say, to_pipeline

    chat.script(
        "Putting you through. ",
        tool_calls=[
            {"id": "call_T", "name": "transfer_call", "arguments": json.dumps({"number": TARGET})}
        ],
    )
    chat.script("", tool_calls=[])  # after the result: nothing more to say
    line = Line("twilio", twilio_harness, streams, to_pipeline)
    call_id, caller = await line.call(
        reply_prompt="You route calls.", first_message="", transfer_allowlist=[TARGET]
    )
    stop_stream_on_update(twilio_api, caller)
    await say(line, caller, "deepgram", "sales please", deepgram, None)
    call = await ended_call(call_id, timeout=15)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "transferred")
    ((_, form),) = twilio_api.updates
    dial = ET.fromstring(form["Twiml"][0]).find("Dial")
    assert dial.find("Number").text == TARGET
    first = chat.bodies[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["end_call", "transfer_call"]
    # The words before the tool call were spoken before the transfer.
    assert [r.json["text"] for r in elevenlabs.tts_requests][:1] == ["Putting you through."]


async def test_pipeline_an_operator_say_is_synthesised_word_for_word(
    twilio_harness,
    streams,
    stage_urls,  # noqa: F811 - the imported fixtures
    openai_audio,  # noqa: F811
    elevenlabs,  # noqa: F811
):
    from tests.calls.test_pipeline_calls import to_pipeline, tts_texts

    line = Line("twilio", twilio_harness, streams, to_pipeline)
    call_id, caller = await line.call()
    await wait_until(lambda: "Hello from Acme!" in tts_texts(elevenlabs, openai_audio))
    await asend_call_command(call_id, "say", text="Your table is ready.")
    await wait_until(lambda: "Your table is ready." in tts_texts(elevenlabs, openai_audio))
    await caller.stop()
    await ended_call(call_id)


async def wait_until(predicate, timeout: float = 8.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
