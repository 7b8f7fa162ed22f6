"""Calls answered by the pipeline (STT → on_message → TTS) over Twilio and Telnyx L16.

Every stage speaks its vendor's protocol to a loopback fake: Deepgram's socket, OpenAI's audio
and chat endpoints, ElevenLabs' text-to-speech stream. The carrier side is the real media
consumer and session, as for every provider.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from asgiref.sync import sync_to_async

import voiceagents
from tests.calls import tools_for_tests
from tests.calls.harness import ended_call
from tests.calls.lines import Line
from tests.fakes import deepgram as fake_deepgram
from tests.fakes import elevenlabs_api as fake_elevenlabs
from tests.fakes import openai_audio as fake_openai_audio
from tests.fakes import openai_chat as fake_openai_chat
from tests.voiceagents.audio.signals import db, fit_tone, peak_frequency, rms, voiced
from voiceagents.audio.g711 import ulaw_decode
from voiceagents.models import Agent, Call, CallEvent, CallStatus, Credential, TranscriptEntry
from voiceagents.services import finalize_call

pytestmark = pytest.mark.django_db(transaction=True)

#: Every event the test handlers got, in order.
HANDLED: list[dict] = []


@voiceagents.reply_handler("pipeline-tests-echo")
async def heard_you(event):
    """The seed's complete pipeline example."""
    HANDLED.append(event)
    return f"I heard you say: {event['text']}"


@voiceagents.reply_handler("pipeline-tests-sync")
def sync_reply(event):
    HANDLED.append(event)
    return f"Sync answer to {event.get('text') or event.get('digit')}."


@voiceagents.reply_handler("pipeline-tests-stream")
async def streamed_reply(event):
    HANDLED.append(event)
    yield "First part of the answer. "
    yield "Second part of the answer."


@voiceagents.reply_handler("pipeline-tests-long")
async def long_reply(event):
    HANDLED.append(event)
    return (
        "This is a long answer that goes on for a while. It has several sentences in it. "
        "The caller will not hear all of them, because they will cut in."
    )


@voiceagents.reply_handler("pipeline-tests-broken")
async def broken_reply(event):
    HANDLED.append(event)
    raise RuntimeError("the database is on fire")


@pytest.fixture(autouse=True)
def _fresh_handled():
    HANDLED.clear()


# -- the fakes and the agent -----------------------------------------------------------------------


@pytest.fixture
async def deepgram():
    async with fake_deepgram.FakeDeepgram() as fake:
        yield fake


@pytest.fixture
def openai_audio():
    with fake_openai_audio.FakeOpenAIAudio() as fake:
        yield fake


@pytest.fixture
def chat():
    with fake_openai_chat.FakeOpenAIChat() as fake:
        yield fake


@pytest.fixture
def elevenlabs():
    with fake_elevenlabs.FakeElevenLabsAPI() as fake:
        yield fake


@pytest.fixture
def stage_urls(voiceagents_settings, deepgram, openai_audio, chat, elevenlabs):
    """Each stage's ``<ID>_URL`` setting points at its fake."""
    voiceagents_settings.update(
        DEEPGRAM_URL=deepgram.url,
        WHISPER_URL=openai_audio.transcriptions_url,
        OPENAI_TTS_URL=openai_audio.speech_url,
        OPENAI_CHAT_URL=chat.url,
        ELEVENLABS_URL=elevenlabs.url,
    )


def _credential(vendor: str, secret: str) -> Credential:
    credential = Credential(vendor=vendor, label=f"{vendor} {secret[-4:]}")
    credential.secret = secret
    credential.save()
    return credential


def _to_pipeline(agent_pk, fields: dict) -> Agent:
    """The call's agent, answering with the pipeline: each stage with its own key."""
    agent = Agent.objects.get(pk=agent_pk)
    stt = fields.pop("stt", "deepgram")
    tts = fields.pop("tts", "elevenlabs")
    agent.provider = "pipeline"
    agent.credential = None
    agent.stt_provider = stt
    agent.stt_credential = (
        _credential("deepgram", "dg-test-key")
        if stt == "deepgram"
        else _credential("openai", fake_openai_audio.API_KEY)
    )
    agent.tts_provider = tts
    agent.tts_credential = (
        _credential("elevenlabs", fake_elevenlabs.API_KEY)
        if tts == "elevenlabs"
        else _credential("openai", fake_openai_audio.API_KEY)
    )
    agent.reply_handler = "pipeline-tests-echo"
    if "reply_prompt" in fields:
        agent.reply_handler = ""
        agent.reply_credential = _credential("openai", fake_openai_chat.API_KEY)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    return agent


async def to_pipeline(agent_pk, fields):
    await sync_to_async(_to_pipeline)(agent_pk, dict(fields))


@pytest.fixture
def twilio(twilio_harness, streams, stage_urls):
    return Line("twilio", twilio_harness, streams, to_pipeline)


@pytest.fixture
def telnyx_l16(telnyx_harness, streams, stage_urls):
    return Line("telnyx-l16", telnyx_harness, streams, to_pipeline, "L16")


# -- helpers ---------------------------------------------------------------------------------------


async def wait_for(predicate, timeout: float = 8.0):
    async with asyncio.timeout(timeout):
        while not (result := predicate()):
            await asyncio.sleep(0.01)
    return result


def tts_texts(elevenlabs, openai_audio) -> list[str]:
    """Every text sent to either TTS fake, in order of the fakes' records."""
    texts = [r.json.get("text", "") for r in elevenlabs.tts_requests]
    texts += [r.json.get("input", "") for r in openai_audio.speech_requests]
    return texts


async def say(line: Line, caller, stt: str, text: str, deepgram, openai_audio, *, ms=600):
    """The caller says ``text``: the STT fake will transcribe the next burst of speech so."""
    if stt == "deepgram":
        deepgram.transcribe_next(text)
    else:
        openai_audio.transcripts.append(text)
    speech = np.concatenate((voiced(line.rate, ms / 1000), np.zeros(line.rate * 9 // 10)))
    await caller.stream_audio(line.caller_audio(speech), realtime=False)


def assert_clean_tone(samples: np.ndarray, rate: int, freq: float = 1000.0) -> None:
    assert abs(peak_frequency(samples, rate) - freq) < 3
    amplitude, residual = fit_tone(samples, freq, rate)
    assert db(amplitude / np.sqrt(2) / max(rms(residual), 1e-9)) > 25, "the tone is not clean"


async def transcript(call_id) -> list[tuple]:
    return [
        (e.role, e.text, e.interrupted)
        async for e in TranscriptEntry.objects.filter(call_id=call_id).order_by("seq")
    ]


# -- whole calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stt", ["deepgram", "whisper"])
@pytest.mark.parametrize("tts", ["elevenlabs", "openai_tts"])
async def test_a_whole_call_on_twilio(twilio, stt, tts, deepgram, openai_audio, elevenlabs):
    call_id, caller = await twilio.call(stt=stt, tts=tts)
    # The first message is spoken although a reply handler is set, and is in the transcript.
    await wait_for(lambda: "Hello from Acme!" in tts_texts(elevenlabs, openai_audio))
    await wait_for(lambda: len(caller.media_in) >= 4000)
    await played_to_the_end(call_id, "Hello from Acme!")  # the greeting played out: no barge-in
    heard_before = len(caller.media_in)

    await say(twilio, caller, stt, "book a table for two", deepgram, openai_audio)
    await wait_for(
        lambda: "I heard you say: book a table for two" in tts_texts(elevenlabs, openai_audio)
    )
    await wait_for(lambda: len(caller.media_in) >= heard_before + 4000)
    reply = bytes(caller.media_in[heard_before + 800 : heard_before + 4000])
    if tts == "elevenlabs":
        # ulaw_8000 from ElevenLabs reaches Twilio byte for byte.
        request = elevenlabs.tts_requests[-1]
        assert request.query["output_format"] == "ulaw_8000"
        assert reply in elevenlabs.tts_audio_for(request.json["text"], "ulaw_8000")
    else:
        # OpenAI's 24 kHz PCM arrives as 8 kHz μ-law with the tone's frequency kept.
        assert_clean_tone(ulaw_decode(reply).astype(np.float64), 8000)
    await asyncio.sleep(0.3)
    await caller.stop()

    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED and call.provider == "pipeline"
    assert await transcript(call_id) == [
        ("agent", "Hello from Acme!", False),
        ("caller", "book a table for two", False),
        ("agent", "I heard you say: book a table for two", False),
    ]
    (event,) = HANDLED
    assert event["text"] == "book a table for two" and event["type"] == "message"
    # The conversation before this turn (the turn itself is ``text``).
    assert event["history"] == [{"role": "agent", "text": "Hello from Acme!", "interrupted": False}]
    assert event["call_id"] == call_id and event["language"] == "en"
    (turn,) = call.metrics["pipeline_turns"]
    assert set(turn) >= {"reply_first_text_ms", "tts_first_byte_ms", "first_audio_ms"}


@pytest.mark.parametrize(("stt", "tts"), [("deepgram", "elevenlabs"), ("whisper", "openai_tts")])
async def test_a_whole_call_on_telnyx_l16(telnyx_l16, stt, tts, deepgram, openai_audio, elevenlabs):
    call_id, caller = await telnyx_l16.call(stt=stt, tts=tts)
    await wait_for(lambda: len(caller.media_in) >= 16000)
    await played_to_the_end(call_id, "Hello from Acme!")
    if stt == "deepgram":
        assert deepgram.stream.params["encoding"] == "linear16"
        assert deepgram.stream.params["sample_rate"] == "16000"
    heard_before = len(caller.media_in)
    await say(telnyx_l16, caller, stt, "hello there", deepgram, openai_audio)
    await wait_for(lambda: "I heard you say: hello there" in tts_texts(elevenlabs, openai_audio))
    await wait_for(lambda: len(caller.media_in) >= heard_before + 16000)
    reply = telnyx_l16.heard(bytes(caller.media_in[heard_before + 3200 : heard_before + 16000]))
    assert_clean_tone(reply, 16000)
    if stt == "whisper":
        (request,) = openai_audio.transcriptions
        assert request.rate == 16000
    await caller.stop()
    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED
    assert ("caller", "hello there", False) in await transcript(call_id)


# -- the reply stage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "spoken"),
    [
        ("pipeline-tests-sync", ["Sync answer to one two."]),
        ("pipeline-tests-stream", ["First part of the answer.", "Second part of the answer."]),
    ],
)
async def test_registered_handlers_answer(twilio, handler, spoken, deepgram, elevenlabs):
    call_id, caller = await twilio.call(reply_handler=handler, first_message="")
    await say(twilio, caller, "deepgram", "one two", deepgram, None)
    await wait_for(lambda: [r.json["text"] for r in elevenlabs.tts_requests] == spoken)
    await caller.stop()
    await ended_call(call_id)
    assert HANDLED and HANDLED[0]["text"] == "one two"


async def test_the_admin_llm_prompt_answers_sentence_by_sentence(
    twilio, deepgram, chat, elevenlabs
):
    chat.script(
        "Sure, a table for two. ", "What time would suit you? ", "We open at six.", delay=0.3
    )
    call_id, caller = await twilio.call(
        reply_prompt="You take bookings for {company}.", first_message=""
    )
    await say(twilio, caller, "deepgram", "a table for two please", deepgram, None)
    # The first sentence is being spoken before the model has finished writing.
    await wait_for(lambda: elevenlabs.tts_requests)
    assert chat.completed == 0
    await wait_for(lambda: len(elevenlabs.tts_requests) == 3)
    assert [r.json["text"] for r in elevenlabs.tts_requests] == [
        "Sure, a table for two.",
        "What time would suit you?",
        "We open at six.",
    ]
    (body,) = chat.bodies
    assert body["stream"] is True
    # The caller's turn once, as the last message (not also in the history).
    assert body["messages"] == [
        {"role": "system", "content": "You take bookings for Acme."},
        {"role": "user", "content": "a table for two please"},
    ]
    await caller.stop()
    await ended_call(call_id)


async def test_a_failing_handler_is_apologised_for_and_the_call_goes_on(
    twilio, deepgram, elevenlabs
):
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-broken", first_message="")
    await say(twilio, caller, "deepgram", "anything", deepgram, None)
    await wait_for(lambda: elevenlabs.tts_requests)
    assert elevenlabs.tts_requests[0].json["text"].startswith("Sorry, I had a problem")
    await say(twilio, caller, "deepgram", "still there?", deepgram, None)
    await wait_for(lambda: len(HANDLED) == 2)
    await caller.stop()
    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED
    errors = [e.data async for e in CallEvent.objects.filter(call_id=call_id, kind="error")]
    assert any("the database is on fire" in e.get("message", "") for e in errors)


async def test_dtmf_reaches_on_message_and_the_timeline(twilio, deepgram, elevenlabs):
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-sync", first_message="")
    # Pressed at once, while the pipeline is still opening: kept and passed on once it is open.
    await caller.dtmf("7")
    await wait_for(lambda: HANDLED)
    assert HANDLED[0]["type"] == "dtmf" and HANDLED[0]["digit"] == "7"
    await wait_for(
        lambda: [r.json["text"] for r in elevenlabs.tts_requests] == ["Sync answer to 7."]
    )
    await caller.stop()
    await ended_call(call_id)
    assert await CallEvent.objects.filter(call_id=call_id, kind="dtmf").aexists()


# -- barge-in -------------------------------------------------------------------------------------


async def test_barge_in_clears_cancels_the_tts_and_truncates_the_turn(twilio, deepgram, elevenlabs):
    elevenlabs.tts_chunk_size = 800  # 100 ms of μ-law per chunk, slower than it plays
    elevenlabs.tts_chunk_delay = 0.15
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-long", first_message="")
    await say(twilio, caller, "deepgram", "tell me something", deepgram, None)
    await wait_for(lambda: len(caller.media_in) >= 8000)  # a second of the long answer
    await say(twilio, caller, "deepgram", "stop please", deepgram, None, ms=500)
    await wait_for(lambda: caller.clears >= 1)
    cut = elevenlabs.tts_requests[0]
    await asyncio.to_thread(cut.done.wait, 10)
    assert cut.disconnected, "the TTS stream was not closed"
    await wait_for(lambda: len(HANDLED) == 2)
    await caller.stop()
    call = await ended_call(call_id)
    rows = await transcript(call_id)
    agent_rows = [r for r in rows if r[0] == "agent"]
    first = agent_rows[0]
    assert first[2] is True, "the interrupted turn is not flagged"
    # The quality figure of the cut: what the history was cut to, out of the audio synthesised
    # by then (the TTS streams slower than real time here, so not the whole answer).
    (barge_in,) = [e async for e in CallEvent.objects.filter(call_id=call_id, kind="barge_in")]
    (figure,) = call.metrics["barge_in_cuts"]
    assert 0 < figure["heard_ms"] == barge_in.data["audio_end_ms"] <= figure["generated_ms"]
    assert 0 < len(first[1]) < len("This is a long answer that goes on for a while.") + 40
    # The handler's history shows the interruption with what the caller heard.
    assert HANDLED[1]["text"] == "stop please"
    assert HANDLED[1]["history"] == [
        {"role": "caller", "text": "tell me something", "interrupted": False},
        {"role": "agent", "text": first[1], "interrupted": True},
    ]


async def test_a_short_noise_does_not_interrupt(twilio, openai_audio, elevenlabs):
    elevenlabs.tts_chunk_size = 800
    elevenlabs.tts_chunk_delay = 0.15
    call_id, caller = await twilio.call(
        stt="whisper", reply_handler="pipeline-tests-long", first_message=""
    )
    await say(twilio, caller, "whisper", "tell me something", None, openai_audio)
    await wait_for(lambda: len(caller.media_in) >= 8000)
    openai_audio.transcripts.append("")  # the noise has no words
    burst = np.concatenate((voiced(8000, 0.15), np.zeros(8000)))
    await caller.stream_audio(twilio.caller_audio(burst), realtime=False)
    await wait_for(lambda: len(openai_audio.transcriptions) == 2)
    await asyncio.sleep(0.3)
    assert caller.clears == 0
    await caller.stop()
    await ended_call(call_id)
    assert all(not interrupted for _, _, interrupted in await transcript(call_id))


async def test_a_speakerphone_echo_of_the_agent_does_not_interrupt(
    twilio, deepgram, elevenlabs, voiceagents_settings
):
    """The agent's voice comes back 120 ms late at -10 dB: the STT never hears it (echo goes on
    as silence), so the words Deepgram would give the next sound are only the caller's own."""
    voiceagents_settings["ECHO_SUPPRESSION"] = True
    from tests.calls.speakerphone import SpeakerphoneCaller

    elevenlabs.tts_chunk_size = 800
    elevenlabs.tts_chunk_delay = 0.15
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-long", first_message="")
    await say(twilio, caller, "deepgram", "tell me something", deepgram, None)
    await wait_for(lambda: len(caller.media_in) >= 4000)  # the long answer is playing
    deepgram.transcribe_next("hold on")  # whatever sound comes next has words
    phone = SpeakerphoneCaller(caller, delay_ms=120, gain_db=-10, noise=0)
    voice = voiced(8000, 0.8, f0=210).astype(float)
    loop = asyncio.get_running_loop()
    began = loop.time()
    talking = asyncio.ensure_future(phone.run(3.0, voice_at=2.0, voice=voice))
    await wait_for(lambda: caller.clears >= 1)
    cleared_after = loop.time() - began
    await talking
    await caller.stop()
    call = await ended_call(call_id)
    assert cleared_after > 1.9  # not the echo (2 s of it): the caller's voice at 2.0 s
    assert phone.echo_frames > 50
    assert call.metrics["echo_frames"] > 50
    assert call.metrics["barge_ins"] == 1


async def test_a_noise_taken_for_a_word_at_first_resumes_the_cut_sentence(
    twilio, deepgram, elevenlabs, voiceagents_settings
):
    """Deepgram's interim result had a word (the agent is cut at once), then the utterance
    ended with none: a false interruption. The agent says the cut reply again from the sentence
    that was cut, without asking the reply stage."""
    voiceagents_settings["FALSE_INTERRUPTION_WINDOW_MS"] = 800
    elevenlabs.tts_chunk_size = 800
    elevenlabs.tts_chunk_delay = 0.15
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-long", first_message="")
    await say(twilio, caller, "deepgram", "tell me something", deepgram, None)
    await wait_for(lambda: len(caller.media_in) >= 8000)  # a second of the long answer
    await deepgram.send_results("uh", is_final=False)  # a noise, heard as a word at first
    await wait_for(lambda: caller.clears >= 1)
    cut_bytes, asked = len(caller.media_in), len(elevenlabs.tts_requests)
    await deepgram.utterance_end(9.0)  # ...and the utterance ends with no words
    await wait_for(lambda: len(elevenlabs.tts_requests) > asked)
    resumed = elevenlabs.tts_requests[asked].json["text"]
    assert resumed.startswith("This is a long answer that goes on for a while.")
    await wait_for(lambda: len(caller.media_in) >= cut_bytes + 4000)  # the caller hears it
    assert len(HANDLED) == 1  # the reply stage was not asked again
    await caller.stop()
    call = await ended_call(call_id)
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["false_interruptions"] == 1
    event = await CallEvent.objects.aget(call_id=call_id, kind="false_interruption")
    assert event.data["resumed"] is True


@voiceagents.reply_handler("pipeline-tests-slow")
async def slow_reply(event):
    HANDLED.append(event)
    await asyncio.sleep(30)
    return "Too late."


async def test_a_handler_too_slow_to_start_is_apologised_for(twilio, deepgram, elevenlabs):
    call_id, caller = await twilio.call(
        reply_handler="pipeline-tests-slow",
        first_message="",
        provider_options={"reply_timeout": 0.3, "apology": "One moment, that took too long."},
    )
    await say(twilio, caller, "deepgram", "are you there", deepgram, None)
    await wait_for(lambda: elevenlabs.tts_requests)
    assert [r.json["text"] for r in elevenlabs.tts_requests] == ["One moment, that took too long."]
    await caller.stop()
    call = await ended_call(call_id)
    assert call.status == CallStatus.COMPLETED


async def test_a_speech_start_without_words_does_not_interrupt(twilio, deepgram, elevenlabs):
    elevenlabs.tts_chunk_size = 800
    elevenlabs.tts_chunk_delay = 0.15
    call_id, caller = await twilio.call(reply_handler="pipeline-tests-long", first_message="")
    await say(twilio, caller, "deepgram", "tell me something", deepgram, None)
    await wait_for(lambda: len(caller.media_in) >= 8000)
    await deepgram.speech_started(3.0)  # a cough: Deepgram hears a voice onset, no words follow
    await asyncio.sleep(0.5)
    assert caller.clears == 0
    await caller.stop()
    await ended_call(call_id)
    assert all(not interrupted for _, _, interrupted in await transcript(call_id))


# -- reconnects: the Deepgram socket drops --------------------------------------------------

RESUME = "Sorry, the line dropped for a moment. I'm back."


async def test_pipeline_stt_drop_reconnects_and_the_reply_stage_keeps_the_history(
    twilio, deepgram, openai_audio, elevenlabs
):
    call_id, caller = await twilio.call(stt="deepgram", tts="elevenlabs")
    await wait_for(lambda: "Hello from Acme!" in tts_texts(elevenlabs, openai_audio))
    await wait_for(lambda: len(caller.media_in) >= 4000)
    await played_to_the_end(call_id, "Hello from Acme!")
    await say(twilio, caller, "deepgram", "book a table", deepgram, openai_audio)
    await wait_for(lambda: "I heard you say: book a table" in tts_texts(elevenlabs, openai_audio))
    await asyncio.sleep(1.0)
    first = deepgram.stream
    await deepgram.drop()

    await wait_for(lambda: len(deepgram.streams) > 1)
    assert deepgram.stream is not first
    await wait_for(lambda: RESUME in " ".join(tts_texts(elevenlabs, openai_audio)))
    await played_to_the_end(call_id, RESUME)  # no barge-in on it
    await say(twilio, caller, "deepgram", "for two", deepgram, openai_audio)
    await wait_for(lambda: "I heard you say: for two" in tts_texts(elevenlabs, openai_audio))
    assert np.any(np.frombuffer(deepgram.stream.audio, dtype=np.uint8) != 0xFF)
    await asyncio.sleep(0.5)
    await caller.stop()

    call = await ended_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    # The reply stage of the new pipeline saw the whole conversation before its turn.
    assert [(h["role"], h["text"]) for h in HANDLED[-1]["history"]] == [
        ("agent", "Hello from Acme!"),
        ("caller", "book a table"),
        ("agent", "I heard you say: book a table"),
        ("agent", RESUME),
    ]
    rows = [(role, text) for role, text, _ in await transcript(call_id)]
    assert rows == [
        ("agent", "Hello from Acme!"),
        ("caller", "book a table"),
        ("agent", "I heard you say: book a table"),
        ("agent", RESUME),
        ("caller", "for two"),
        ("agent", "I heard you say: for two"),
    ]


async def played_to_the_end(call_id, text: str, timeout: float = 10.0) -> None:
    """Wait until the agent turn ``text`` is written: it is once it has played to its end."""
    async with asyncio.timeout(timeout):
        while not await TranscriptEntry.objects.filter(call_id=call_id, text=text).aexists():
            await asyncio.sleep(0.05)


# -- usage, for the cost estimate ------------------------------------------------------------


async def test_a_pipeline_call_counts_stt_seconds_llm_tokens_and_tts_characters(
    twilio, deepgram, chat, elevenlabs
):
    chat.script("Sure, a table for two. ", "What time would suit you?")
    call_id, caller = await twilio.call(reply_prompt="You take bookings.", first_message="")
    await say(twilio, caller, "deepgram", "a table for two please", deepgram, None)
    await wait_for(lambda: len(elevenlabs.tts_requests) == 2)
    await wait_for(lambda: chat.completed == 1)
    sent_ms = caller.timestamp  # ms of audio the caller sent
    await caller.stop()
    await ended_call(call_id)

    call = await Call.objects.aget(pk=call_id)
    usage = {entry["service"]: entry for entry in call.metrics["usage"]}
    assert usage["reply:openai_chat"] == {
        "service": "reply:openai_chat",
        "model": "gpt-4o-mini",
        "input_tokens": 50,  # the fake's prompt count
        "output_tokens": 2,  # one per scripted piece
    }
    assert usage["tts:elevenlabs"]["characters"] == len("Sure, a table for two.") + len(
        "What time would suit you?"
    )
    assert usage["stt:deepgram"]["audio_seconds"] == pytest.approx(sent_ms / 1000, abs=0.1)

    await sync_to_async(finalize_call)(call_id)
    await call.arefresh_from_db()
    amounts = {(i["service"], i["unit"]): i["amount"] for i in call.cost["items"]}
    assert amounts[("tts:elevenlabs", "character")] == pytest.approx(
        usage["tts:elevenlabs"]["characters"] * 0.10 / 1000
    )
    assert ("stt:deepgram", "second of audio") in amounts
    assert ("reply:openai_chat", "output token") in amounts


# -- tools ----------------------------------------------------------------------------------------


async def test_the_llm_calls_a_registered_tool_and_speaks_its_result(
    twilio, deepgram, chat, elevenlabs
):
    import json

    tools_for_tests.seen_contexts.clear()
    chat.script(
        "One moment. ",
        tool_calls=[{"id": "call_A", "name": "lookup_order", "arguments": '{"order_id": "A-17"}'}],
    )
    chat.script("Order A-17 has shipped.")
    call_id, caller = await twilio.call(
        reply_prompt="You track orders.", first_message="", tools=["lookup_order"]
    )
    await say(twilio, caller, "deepgram", "where is my order A-17", deepgram, None)
    await wait_for(lambda: len(elevenlabs.tts_requests) == 2)
    assert [r.json["text"] for r in elevenlabs.tts_requests] == [
        "One moment.",
        "Order A-17 has shipped.",
    ]
    first, second = chat.bodies
    assert [t["function"]["name"] for t in first["tools"]] == ["end_call", "lookup_order"]
    assert first["tools"][1]["type"] == "function" and first["tool_choice"] == "auto"
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["content"] == "One moment. "
    assert assistant["tool_calls"] == [
        {
            "id": "call_A",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": '{"order_id": "A-17"}'},
        }
    ]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_A"
    assert json.loads(tool["content"])["status"] == "shipped"
    assert tools_for_tests.seen_contexts[0].call_id == str(call_id)
    await caller.stop()
    call = await ended_call(call_id)
    # Both requests' tokens are counted (the fake: 50 prompt tokens and one per piece each).
    usage = {entry["service"]: entry for entry in call.metrics["usage"]}
    assert usage["reply:openai_chat"]["input_tokens"] == 100


async def test_a_failing_tool_is_told_to_the_llm_as_an_error(twilio, deepgram, chat, elevenlabs):
    chat.script(
        tool_calls=[{"id": "call_B", "name": "broken_lookup", "arguments": '{"order_id": "A"}'}]
    )
    chat.script("Sorry, I cannot look that up right now.")
    call_id, caller = await twilio.call(
        reply_prompt="You track orders.", first_message="", tools=["broken_lookup"]
    )
    await say(twilio, caller, "deepgram", "where is my order", deepgram, None)
    await wait_for(lambda: len(chat.bodies) == 2)
    tool = chat.bodies[1]["messages"][-1]
    assert tool["role"] == "tool" and tool["content"].startswith("Error: The tool failed")
    await wait_for(lambda: any("cannot look" in r.json["text"] for r in elevenlabs.tts_requests))
    await caller.stop()
    await ended_call(call_id)


async def test_the_llm_ends_the_call_after_its_goodbye(twilio, deepgram, chat, elevenlabs):
    chat.script(
        "",
        tool_calls=[{"id": "call_E", "name": "end_call", "arguments": '{"reason": "done"}'}],
    )
    chat.script("Goodbye, and thanks for calling!", delay=0.3)
    call_id, caller = await twilio.call(reply_prompt="You take bookings.", first_message="")
    await say(twilio, caller, "deepgram", "that's all, bye", deepgram, None)
    call = await ended_call(call_id, timeout=15)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "agent_hangup")
    # The goodbye was written, synthesized and played before the hang-up.
    assert [r.json["text"] for r in elevenlabs.tts_requests] == ["Goodbye, and thanks for calling!"]
    entries = await transcript(call_id)
    assert entries[-1] == ("agent", "Goodbye, and thanks for calling!", False)
