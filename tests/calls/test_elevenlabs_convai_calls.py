"""Calls answered by an ElevenLabs Conversational AI agent over Twilio and Telnyx (PCMU and L16).

The whole path runs for real: the carrier's media consumer, the session, provisioning of the
ElevenLabs agent against the fake Agents REST API (created on the first call, for the carrier's
audio format), a signed URL, and the conversation socket of the fake ElevenLabs.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from tests.calls.harness import ended_call
from tests.calls.lines import Line
from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from tests.fakes.elevenlabs_convai import FakeElevenLabsConvAI, ScriptedReply
from tests.voiceagents.audio.signals import db, fit_tone, peak_frequency, rms
from voiceagents.audio.g711 import ulaw_decode, ulaw_encode
from voiceagents.models import Agent, Call, CallEvent, CallStatus, Credential, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

RACHEL = "21m00Tcm4TlvDq8ikWAM"


@pytest.fixture
def el_api():
    with FakeElevenLabsAPI() as api:
        yield api


@pytest.fixture
async def el(el_api):
    async with FakeElevenLabsConvAI(el_api) as fake:
        yield fake


def _to_elevenlabs(agent_pk, api_url: str, fields: dict) -> Agent:
    """The call's agent, turned into an ElevenLabs ConvAI agent with nothing but an API key."""
    credential = Credential(vendor="elevenlabs", label="ElevenLabs", api_base_url=api_url)
    credential.secret = API_KEY
    credential.save()
    agent = Agent.objects.get(pk=agent_pk)
    agent.provider = "elevenlabs_convai"
    agent.credential = credential
    agent.voice = "rachel"
    agent.model = ""
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    return agent


def configure(el_api):
    """How a ``Line`` turns its call's agent into an ElevenLabs ConvAI one."""

    async def to_elevenlabs(agent_pk, fields):
        await sync_to_async(_to_elevenlabs)(agent_pk, el_api.url, fields)

    return to_elevenlabs


def agent_audio(line: Line, samples: np.ndarray) -> bytes:
    """Samples as the ElevenLabs agent synced for this leg speaks them."""
    if line.codec == "L16":
        return samples.astype("<i2").tobytes()
    return ulaw_encode(samples.astype(np.int16))


def el_format(line: Line) -> str:
    return "pcm_16000" if line.codec == "L16" else "ulaw_8000"


@pytest.fixture(params=["twilio", "telnyx-pcmu", "telnyx-l16"])
def line(request, streams, el_api, el):
    carrier, _, codec = request.param.partition("-")
    harness = request.getfixturevalue(f"{carrier}_harness")
    return Line(request.param, harness, streams, configure(el_api), codec.upper())


@pytest.fixture
def twilio_line(twilio_harness, streams, el_api, el):
    return Line("twilio", twilio_harness, streams, configure(el_api))


@pytest.fixture
def telnyx_line(telnyx_harness, streams, el_api, el):
    return Line("telnyx-pcmu", telnyx_harness, streams, configure(el_api), "PCMU")


def sine(ms: int, rate: int, freq: float = 1000.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(ms * rate // 1000) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def assert_clean_tone(samples: np.ndarray, rate: int, freq: float = 1000.0) -> None:
    assert abs(peak_frequency(samples, rate) - freq) < 3
    amplitude, residual = fit_tone(samples, freq, rate)
    assert db(amplitude / np.sqrt(2) / max(rms(residual), 1e-9)) > 30, "the tone is not clean"


async def wait_for(predicate, timeout: float = 5.0):
    async with asyncio.timeout(timeout):
        while not (result := predicate()):
            await asyncio.sleep(0.01)
    return result


async def transcript(call_id) -> list[TranscriptEntry]:
    return [e async for e in TranscriptEntry.objects.filter(call_id=call_id).order_by("seq")]


# -- a whole call on every carrier leg -------------------------------------------------------------


async def test_a_whole_call_on_every_leg(line, el, el_api):
    greeting = agent_audio(line, sine(400, line.rate))
    el.replies += [
        ScriptedReply(greeting, "Hello from Acme!"),
        ScriptedReply(agent_audio(line, sine(200, line.rate, 500.0)), "Tomorrow works."),
    ]
    call_id, caller = await line.call()

    init = (await wait_for(lambda: el.conversations and el.conversation.init)) or {}
    # Provisioned on first use, for this leg's format, with the admin's agent.
    (created,) = el_api.of("POST", "/v1/convai/agents/create")
    config = created.json["conversation_config"]
    assert config["asr"]["user_input_audio_format"] == el_format(line)
    assert config["tts"]["agent_output_audio_format"] == el_format(line)
    assert config["tts"]["voice_id"] == RACHEL

    agent = init["conversation_config_override"]["agent"]
    assert agent["prompt"]["prompt"].startswith("You work for")
    assert agent["first_message"] == "Hello from Acme!"
    assert agent["language"] == "en"
    assert init["conversation_config_override"]["tts"]["voice_id"] == RACHEL

    # The greeting reaches the caller: byte for byte on μ-law legs, as a clean tone on L16.
    await wait_for(lambda: len(caller.media_in) >= len(greeting))
    if line.codec == "L16":
        assert_clean_tone(line.heard(caller.media_in[: len(greeting)])[400:], line.rate)
    else:
        assert bytes(caller.media_in[: len(greeting)]) == greeting

    # Caller audio reaches ElevenLabs: untouched μ-law, or L16 16 kHz → pcm_16000 as a clean tone.
    spoken = line.caller_audio(sine(300, line.rate))
    await caller.stream_audio(spoken, realtime=False)
    await wait_for(lambda: len(el.caller_audio()) >= len(spoken))
    if line.codec == "L16":
        received = np.frombuffer(el.caller_audio()[: len(spoken)], dtype="<i2")
        assert_clean_tone(received[400:].astype(np.float64), 16000)
    else:
        assert el.caller_audio()[: len(spoken)] == spoken

    await caller.dtmf("5")
    (update,) = await el.wait_for(lambda: el.of_type("contextual_update"))
    assert "5" in update["text"]

    await asyncio.sleep(0.5)  # the greeting (400 ms) has played: no interruption
    await el.user_speaks("Can I come tomorrow?")
    await el.wait_for(lambda: el.conversation.speaking is not None)
    await asyncio.sleep(0.3)
    await caller.stop()

    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED
    assert call.provider == "elevenlabs_convai"
    assert call.provider_session_id == el.conversation.conversation_id
    rows = [(e.role, e.text, e.interrupted) for e in await transcript(call_id)]
    assert rows == [
        ("agent", "Hello from Acme!", False),
        ("caller", "Can I come tomorrow?", False),
        ("agent", "Tomorrow works.", False),
    ]
    kinds = [e.kind async for e in CallEvent.objects.filter(call_id=call_id)]
    assert "dtmf" in kinds
    assert call.recording


async def test_the_stored_agent_is_reused_by_the_next_call(twilio_line, el, el_api, streams):
    first_id, caller = await twilio_line.call()
    await el.wait_for(lambda: el.conversations and el.conversation.init)
    await caller.stop()
    await ended_call(first_id)
    incoming = await sync_to_async(another_call)(first_id)
    _, caller, _ = await streams.call(twilio_line.harness, incoming)
    await el.wait_for(lambda: len(el.conversations) == 2 and el.conversation.init)
    await caller.stop()
    await ended_call(incoming.call_id)
    assert len(el_api.of("POST", "/v1/convai/agents/create")) == 1
    assert not el_api.of("PATCH")
    assert el.conversations[0].agent_id == el.conversations[1].agent_id


def another_call(call_id):
    """A second inbound Twilio call to the same number and agent, waiting for its stream."""
    from tests.calls.harness import Incoming
    from tests.fakes.twilio_stream import sid
    from voiceagents.call import streamtokens

    first = Call.objects.get(pk=call_id)
    call = Call.objects.create(
        agent=first.agent,
        phone_number=first.phone_number,
        carrier="twilio",
        carrier_call_id=sid("CA"),
        direction="inbound",
        from_number=first.from_number,
        to_number=first.to_number,
        status=CallStatus.RINGING,
    )
    return Incoming(str(call.pk), streamtokens.mint(call.pk), call.carrier_call_id)


async def test_a_different_format_than_configured_still_gives_a_clean_tone(twilio_line, el, caplog):
    el.formats = ("pcm_16000", "pcm_16000")  # an agent whose formats were changed by hand
    tone_16k = sine(600, 16000).astype("<i2").tobytes()
    el.replies.append(ScriptedReply(tone_16k, "Hello from Acme!"))
    with caplog.at_level(logging.WARNING, logger="voiceagents.providers.elevenlabs_convai"):
        call_id, caller = await twilio_line.call()
        await wait_for(lambda: len(caller.media_in) >= 4000)
    heard = ulaw_decode(bytes(caller.media_in[800:4000])).astype(np.float64)
    assert_clean_tone(heard, 8000)
    warnings = [r for r in caplog.records if "converted" in r.getMessage()]
    assert len(warnings) == 1
    # Caller μ-law goes up as pcm_16000 (a tone stays a tone).
    await caller.stream_audio(ulaw_encode(sine(300, 8000).astype(np.int16)), realtime=False)
    await wait_for(lambda: len(el.caller_audio()) >= 9600)
    up = np.frombuffer(el.caller_audio()[:9600], dtype="<i2").astype(np.float64)
    assert_clean_tone(up[800:], 16000)
    await caller.stop()
    await ended_call(call_id)


# -- barge-in and corrections ---------------------------------------------------------------------


async def test_interruption_clears_the_carrier_and_drops_the_cut_utterance(twilio_line, el):
    long = ulaw_encode(sine(3000, 8000).astype(np.int16))
    el.replies += [
        ScriptedReply(long, "A very long greeting that goes on and on."),
        ScriptedReply(bytes([0x55]) * 1600, "Sure."),
    ]
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 1600)
    await el.user_speaks("Wait.")
    await wait_for(lambda: caller.clears >= 1)
    # Late audio of the cut utterance (event 1): never sent to the caller.
    await el.send(
        {
            "type": "audio",
            "audio_event": {
                "audio_base_64": base64.b64encode(b"\x33" * 800).decode(),
                "event_id": 1,
            },
        }
    )
    await wait_for(lambda: bytes([0x55]) * 160 in bytes(caller.media_in))
    assert b"\x33" * 160 not in bytes(caller.media_in)
    # The clear went out before any audio of the next utterance.
    frames = [f["event"] for f in caller.received if f["event"] in ("clear", "media")]
    first_clear = frames.index("clear")
    after = [
        base64.b64decode(f["media"]["payload"])
        for f in caller.received[len(caller.received) - len(frames) + first_clear :]
        if f["event"] == "media"
    ]
    assert after and after[0] == bytes([0x55]) * 160
    await el.correct("A very long greeting that goes on and on.", "A very long")
    await asyncio.sleep(0.4)  # written by the background writer, then rewritten
    await caller.stop()
    call = await ended_call(call_id)
    rows = [(e.role, e.text, e.interrupted) for e in await transcript(call_id)]
    assert rows[0] == ("agent", "A very long", True)
    assert rows[1] == ("caller", "Wait.", False)
    assert rows[2] == ("agent", "Sure.", False)
    (barge_in,) = [e async for e in CallEvent.objects.filter(call_id=call_id, kind="barge_in")]
    assert 0 < barge_in.data["audio_end_ms"] < 3000
    assert call.metrics["barge_ins"] == 1
    # The quality figure of the cut: what the provider was told, out of the audio it had sent.
    (cut,) = call.metrics["barge_in_cuts"]
    assert cut["heard_ms"] == barge_in.data["audio_end_ms"] <= cut["generated_ms"] <= 3000
    # How long the carrier's clear took after the interruption reached the session (reported,
    # not asserted: timing belongs in benchmarks).
    print("barge_in_clear_ms", call.metrics["barge_in_clear_ms"])


async def test_an_interruption_with_no_words_is_counted_as_false(twilio_line, el):
    """ElevenLabs cut the agent for a sound with no words: counted and on the timeline; there
    is nothing to resume (ElevenLabs has stopped the utterance and has no "continue")."""
    el.replies += [ScriptedReply(ulaw_encode(sine(3000, 8000).astype(np.int16)), "A long one.")]
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 1600)
    await el.user_speaks("", reply=False)
    await wait_for(lambda: caller.clears >= 1)
    await asyncio.sleep(0.2)
    await caller.stop()
    call = await ended_call(call_id)
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["false_interruptions"] == 1
    event = await CallEvent.objects.aget(call_id=call_id, kind="false_interruption")
    assert event.data["resumed"] is False


async def test_a_speakerphone_echo_of_the_agent_never_reaches_elevenlabs(
    twilio_line, el, voiceagents_settings
):
    """ElevenLabs decides interruptions on its side, from the audio it gets: the agent's own
    voice coming back (120 ms late, -10 dB) reaches it as silence; the caller's voice does not."""
    voiceagents_settings["ECHO_SUPPRESSION"] = True
    from tests.calls.speakerphone import SpeakerphoneCaller
    from tests.voiceagents.audio.echo_signals import speechlike

    agent = ulaw_encode(speechlike(4000, 120, seed=1).astype(np.int16))
    el.replies += [ScriptedReply(agent, "A long answer.")]
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    before = len(el.caller_audio())
    phone = SpeakerphoneCaller(caller, delay_ms=120, gain_db=-10, noise=0)
    voice = speechlike(800, 210, seed=5)
    await phone.run(3.0, voice_at=2.0, voice=voice)
    await wait_for(lambda: len(el.caller_audio()) >= before + 3000 * 8 - 160)
    received = np.frombuffer(el.caller_audio()[before : before + 3000 * 8], dtype=np.uint8)
    frames = ulaw_decode(received.tobytes()).astype(float).reshape(-1, 160)
    # Frames louder than -40 dBFS (quieter ones are passed on as they are: no detector fires).
    sound = np.sqrt((frames**2).mean(axis=1)) > 300
    sent = np.array([np.sqrt((f**2).mean()) > 300 for f in phone.sent[: len(frames)]])
    assert sent[:95].sum() > 50  # the microphone carried the echo...
    assert sound[10:95].mean() < 0.1  # ...which ElevenLabs got as silence
    assert sound[102:140].mean() > 0.6  # the caller's own voice went through
    await caller.stop()
    call = await ended_call(call_id)
    assert call.metrics["echo_frames"] > 50


# -- tools ----------------------------------------------------------------------------------------


async def test_an_unknown_tool_gets_an_error_result_and_the_call_goes_on(twilio_line, el):
    call_id, caller = await twilio_line.call()
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    await el.tool_call("book_flight", {"to": "Paris"}, "toolu_x")
    (result,) = await el.wait_for(el.tool_results)
    assert result["tool_call_id"] == "toolu_x" and result["is_error"] is True
    assert "book_flight" in result["result"]
    el.replies.append(ScriptedReply(bytes([0x44]) * 800, "I can't do that, sorry."))
    await el.user_speaks("Book me a flight.")
    await wait_for(lambda: bytes([0x44]) * 160 in bytes(caller.media_in))
    await caller.stop()
    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED
    (event,) = [e async for e in CallEvent.objects.filter(call_id=call_id, kind="tool_call")]
    assert event.data["name"] == "book_flight" and event.data["error"] == "unknown_tool"


async def test_a_transfer_outside_the_allowlist_is_refused_without_carrier_action(
    telnyx_line, el, telnyx_api
):
    # On Telnyx every carrier action is a Call Control command to the (fake) API.
    call_id, caller = await telnyx_line.call(transfer_allowlist=["+14155550111"])
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    commands = len(telnyx_api.commands)
    await el.tool_call("transfer_call", {"number": "+1 (900) 555-0000"}, "toolu_t")
    (result,) = await el.wait_for(el.tool_results)
    assert result["is_error"] is True
    assert "not a number this line may transfer to" in result["result"]
    el.replies.append(ScriptedReply(bytes([0x47]) * 800, "I can't transfer you there."))
    await el.user_speaks("Then just tell me.")
    await wait_for(lambda: bytes([0x47]) * 160 in bytes(caller.media_in))  # the call goes on
    assert len(telnyx_api.commands) == commands  # no transfer, no hang-up: nothing at all
    await caller.stop()
    await ended_call(call_id)
    (event,) = [e async for e in CallEvent.objects.filter(call_id=call_id, kind="transfer")]
    assert event.data["number"] == "+19005550000" and event.data["allowed"] is False


async def test_a_registered_tool_is_a_client_tool_run_for_the_agent(twilio_line, el, el_api):
    import json

    from tests.calls import tools_for_tests

    call_id, caller = await twilio_line.call(tools=["lookup_order"])
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    (agent,) = el_api.agents.values()
    tools = agent.as_json()["conversation_config"]["agent"]["prompt"]["tools"]
    (lookup,) = [tool for tool in tools if tool["name"] == "lookup_order"]
    assert lookup["type"] == "client" and lookup["expects_response"] is True
    assert lookup["parameters"]["required"] == ["order_id"]
    tools_for_tests.seen_contexts.clear()
    await el.tool_call("lookup_order", {"order_id": "B-2"}, "toolu_L")
    (result,) = await el.wait_for(el.tool_results)
    assert result["tool_call_id"] == "toolu_L" and result["is_error"] is False
    assert json.loads(result["result"])["order"] == "B-2"
    assert tools_for_tests.seen_contexts[0].call_id == str(call_id)
    await caller.stop()
    await ended_call(call_id)


async def test_the_agent_ending_the_call_hangs_up_after_its_goodbye(twilio_line, el):
    call_id, caller = await twilio_line.call()
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    el.replies.append(ScriptedReply(bytes([0x66]) * 2400, "Goodbye!"))
    await el.user_speaks("That's all, thanks.")
    await el.tool_call("end_call", {"reason": "caller is done"}, "toolu_e")
    call = await ended_call(call_id, timeout=10)
    assert call.end_reason == "agent_hangup"
    assert call.status == CallStatus.COMPLETED
    # The goodbye (300 ms) played in full before the hang-up.
    assert bytes(caller.media_in).count(bytes([0x66])) >= 2400


async def test_elevenlabs_ending_the_conversation_completes_the_call(twilio_line, el):
    call_id, caller = await twilio_line.call()
    await el.wait_for(lambda: el.conversations and el.conversation.input_format)
    await el.close(1000, "Agent ended the call")
    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "provider_ended")


# -- failures -------------------------------------------------------------------------------------


async def test_a_conversation_refused_at_set_up_fails_the_call_with_a_readable_reason(
    twilio_line, el, admin_client
):
    el.allowed_overrides = frozenset()  # an agent with overrides disabled
    call_id, caller = await twilio_line.call()
    await caller.wait_closed() if hasattr(caller, "wait_closed") else None
    call = await ended_call(call_id)
    assert call.status == CallStatus.FAILED
    assert call.end_reason == "provider_error"
    assert "is not allowed by config" in call.error and "overrides" in call.error
    page = await sync_to_async(admin_client.get)(f"/admin/voiceagents/call/{call_id}/change/")
    assert "is not allowed by config" in page.content.decode()


async def test_a_conversation_dropped_for_good_fails_the_call_and_keeps_the_transcript(
    twilio_line, el, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 1  # no reconnect: the first drop is the last
    el.replies.append(ScriptedReply(bytes([0x12]) * 800, "Hello from Acme!"))
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    await el.user_speaks("Hi there", reply=False)
    await asyncio.sleep(0.2)
    await el.drop()
    call = await ended_call(call_id)
    assert call.status == CallStatus.FAILED and call.end_reason == "provider_lost"
    assert "ElevenLabs closed the conversation" in call.error
    rows = [(e.role, e.text) for e in await transcript(call_id)]
    assert rows == [("agent", "Hello from Acme!"), ("caller", "Hi there")]


# -- acceptance: an agent made in the admin, with nothing but an API key -------------------------


def _admin_made_agent(client, api_url: str) -> Agent:
    from tests.voiceagents.test_admin import admin_url, credential_form_data, post_agent_add

    response = client.post(
        admin_url("credential", "add"),
        credential_form_data("elevenlabs", secret=API_KEY, api_base_url=api_url),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    credential = Credential.objects.get(vendor="elevenlabs")
    response = post_agent_add(
        client,
        name="Rachel desk",
        slug="rachel-desk",
        provider="elevenlabs_convai",
        voice="rachel",
        credential=str(credential.pk),
        system_prompt="You answer for {company}.",
        first_message="Hello from {company}!",
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    return Agent.objects.get(slug="rachel-desk")


async def test_an_agent_made_in_the_admin_answers_a_call(
    twilio_line, el, el_api, streams, admin_client
):
    agent = await sync_to_async(_admin_made_agent)(admin_client, el_api.url)
    # A Twilio call (as the voice webhook leaves it) to a number answered by this agent.
    incoming = await twilio_line.harness.new_call()
    await Call.objects.filter(pk=incoming.call_id).aupdate(agent=agent)
    el.replies.append(ScriptedReply(bytes([0x21]) * 1600, "Hello from Acme Dental!"))
    _, caller, _ = await streams.call(twilio_line.harness, incoming)
    await wait_for(lambda: bytes([0x21]) * 1600 in bytes(caller.media_in))
    init = el.conversation.init["conversation_config_override"]
    assert init["agent"]["first_message"] == "Hello from Acme Dental!"
    assert init["agent"]["prompt"]["prompt"] == "You answer for Acme Dental."
    assert init["tts"]["voice_id"] == RACHEL
    await caller.stop()
    call = await ended_call(incoming.call_id)
    assert call.status == CallStatus.COMPLETED
    rows = [(e.role, e.text) for e in await transcript(incoming.call_id)]
    assert rows == [("agent", "Hello from Acme Dental!")]


# -- reconnects (docs/providers/elevenlabs_convai.md#reconnects) ------------------------------

RESUME = "Sorry, the line dropped for a moment. I'm back."


async def test_elevenlabs_drop_opens_a_new_conversation_that_knows_the_past_turns(twilio_line, el):
    el.replies.append(ScriptedReply(bytes([0x12]) * 800, "Hello from Acme!"))
    el.replies.append(ScriptedReply(bytes([0x23]) * 800, RESUME))
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    await el.user_speaks("I lost my card.", reply=False)
    await asyncio.sleep(0.3)
    first = el.conversation
    await el.drop()

    second = await wait_for(
        lambda: len(el.conversations) > 1 and el.conversation.init and el.conversation
    )
    assert second is not first
    agent = second.init["conversation_config_override"]["agent"]
    prompt = agent["prompt"]["prompt"]
    assert prompt.startswith("You work for Acme.")
    assert "Caller: I lost my card." in prompt and "You: Hello from Acme!" in prompt
    # The new conversation opens with the resume line, not the greeting again.
    assert agent["first_message"] == RESUME
    await wait_for(lambda: bytes([0x23]) * 800 in bytes(caller.media_in))
    # Caller audio goes to the new conversation.
    await caller.stream_audio(b"\x55" * 1600, realtime=False)
    await wait_for(lambda: len(second.audio_in) >= 1600)
    await el.user_speaks("Can you block it?", reply=False)
    await asyncio.sleep(0.3)
    await caller.stop()

    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    rows = [(e.role, e.text) for e in await transcript(call_id)]
    assert rows == [
        ("agent", "Hello from Acme!"),
        ("caller", "I lost my card."),
        ("agent", RESUME),
        ("caller", "Can you block it?"),
    ]
    assert call.metrics["provider_reconnects"] == 1


async def test_elevenlabs_drops_up_to_the_limit_fail_the_call_as_provider_lost(
    twilio_line, el, voiceagents_settings
):
    voiceagents_settings["PROVIDER_MAX_FAILURES"] = 2
    el.replies.append(ScriptedReply(bytes([0x12]) * 800, "Hello from Acme!"))
    call_id, caller = await twilio_line.call()
    await wait_for(lambda: len(caller.media_in) >= 800)
    await el.user_speaks("Hello?", reply=False)
    await asyncio.sleep(0.2)
    await el.drop()
    await wait_for(lambda: len(el.conversations) > 1 and el.conversation.init)
    await el.drop()
    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.FAILED, "provider_lost")
    rows = [(e.role, e.text) for e in await transcript(call_id)]
    assert rows[:2] == [("agent", "Hello from Acme!"), ("caller", "Hello?")]
