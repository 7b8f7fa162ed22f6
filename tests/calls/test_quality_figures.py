"""A call's quality figures, from a scripted conversation through the fake Twilio caller and the
fake OpenAI Realtime: barge-ins with what was heard of each cut reply, the response latency with
its percentiles, and the greeting latency, as ``Call.metrics`` stores them and the admin shows them.
"""

import asyncio
import math

import numpy as np
import pytest

from tests.fakes.openai_realtime import ScriptedResponse
from voiceagents.admin.call_quality import quality
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.models import Call

pytestmark = pytest.mark.django_db(transaction=True)

#: Scheduling slack for figures that follow the wall clock, wide enough for a busy 2-core machine.
SLACK_MS = 250


def ulaw_tone(ms: int, freq: float = 440.0) -> bytes:
    t = np.arange(ms * 8) / 8000.0
    return ulaw_encode((8000.0 * np.sin(2 * np.pi * freq * t)).astype(np.int16))


async def played_for(caller, ms: int, since_bytes: int) -> None:
    """Wait until the fake Twilio has played ``ms`` of agent audio after ``since_bytes``."""
    deadline = asyncio.get_running_loop().time() + 10
    while caller.playback.played_bytes - since_bytes < ms * 8:
        assert asyncio.get_running_loop().time() < deadline, "the agent audio never played"
        await asyncio.sleep(0.005)


async def test_a_conversation_with_two_barge_ins_yields_its_quality_figures(
    create_call, connect_caller, fake_openai
):
    loop = asyncio.get_running_loop()
    # The greeting comes at once (as OpenAI streams it, faster than real time); the second reply
    # is generated in real time, 100 ms a chunk, so a barge-in cuts it before it is all there.
    fake_openai.responses.append(ScriptedResponse(audio=ulaw_tone(2000), transcript="Hello."))
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    started = loop.time()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    streaming = asyncio.ensure_future(caller.stream_audio(ulaw_tone(3000, 300), realtime=True))
    await fake_openai.wait_for(lambda: caller.media_in)
    first_audio_at = loop.time()

    # Barge-in 1: 700 ms into the greeting.
    await played_for(caller, 700, 0)
    item = await fake_openai.speech_started(audio_start_ms=700)
    await fake_openai.wait_for(lambda: caller.clears == 1)
    truncates = await fake_openai.wait_for(
        lambda: fake_openai.events_of("conversation.item.truncate")
    )
    heard_1 = truncates[0]["audio_end_ms"]
    await fake_openai.speech_stopped(item, audio_end_ms=1200)
    await fake_openai.caller_transcript(item, "Wait.")

    # Reply 1, 600 ms after the caller stopped; barge-in 2 after 500 ms of it.
    await asyncio.sleep(0.6)
    before = caller.playback.played_bytes
    await fake_openai.respond(
        ScriptedResponse(audio=ulaw_tone(3000), transcript="Sure.", chunk=800, interval=0.1)
    )
    await played_for(caller, 500, before)
    item = await fake_openai.speech_started(audio_start_ms=2500)
    await fake_openai.wait_for(lambda: caller.clears == 2)
    truncates = await fake_openai.wait_for(
        lambda: (
            len(fake_openai.events_of("conversation.item.truncate")) == 2
            and fake_openai.events_of("conversation.item.truncate")
        )
    )
    heard_2 = truncates[1]["audio_end_ms"]
    await fake_openai.speech_stopped(item, audio_end_ms=3000)
    await fake_openai.caller_transcript(item, "Thursday.")

    # Reply 2, 200 ms after the caller stopped, played to its end.
    await asyncio.sleep(0.2)
    before = caller.playback.played_bytes
    await fake_openai.respond(ScriptedResponse(audio=ulaw_tone(300), transcript="Booked."))
    await played_for(caller, 300, before)
    await streaming
    await caller.stop()
    await caller.wait_closed()

    metrics = (await Call.objects.aget(pk=setup.call.pk)).metrics
    assert metrics["barge_ins"] == 2
    assert metrics["false_interruptions"] == 0
    cut_1, cut_2 = metrics["barge_in_cuts"]
    # What the provider was told the caller heard is what the call's figures say.
    assert (cut_1["heard_ms"], cut_2["heard_ms"]) == (heard_1, heard_2)
    assert abs(heard_1 - 700) <= SLACK_MS and abs(heard_2 - 500) <= SLACK_MS
    # The greeting had all arrived; the second reply only as far as generated in real time
    # (whole 100 ms chunks), more than was heard and far from its 3 s.
    assert cut_1["generated_ms"] == 2000
    assert heard_2 <= cut_2["generated_ms"] < 3000 and cut_2["generated_ms"] % 100 == 0
    assert cut_1["at_ms"] < cut_2["at_ms"] <= metrics["duration_ms"]

    latencies = metrics["response_latency_ms"]
    assert len(latencies) == 2
    assert 600 <= latencies[0] <= 600 + SLACK_MS
    assert 200 <= latencies[1] <= 200 + SLACK_MS
    # Nearest rank over the two: the median is the quicker, the 90th percentile the slower.
    assert metrics["response_latency_ms_p50"] == latencies[1]
    assert metrics["response_latency_ms_p90"] == metrics["response_latency_ms_p95"] == latencies[0]
    assert metrics["response_latency_ms_max"] == latencies[0]

    # The greeting left before it reached the fake caller (and the fake answers at once).
    assert 0 < metrics["greeting_latency_ms"] <= (first_audio_at - started) * 1000 + 5
    assert "first_agent_audio_ms" not in metrics

    # Playback's network estimates (probe marks and first echoes): loopback, so close to nothing.
    for key in ("network_delay_ms", "jitter_ms"):
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= SLACK_MS, metrics

    # The admin's Quality section shows this call's figures.
    shown = {f.key: f.value for _title, figures in quality(metrics).groups for f in figures}
    assert shown["barge_ins"] == "2" and shown["false_interruptions"] == "0"
    assert shown["response_latency_ms_max"] == f"{latencies[0] / 1000:.1f} s"
    rows = quality(metrics).barge_ins
    assert rows[0].generated == "2.00 s"
    assert rows[0].heard == f"{heard_1 / 1000:.2f} s"
    assert rows[0].share == f"{heard_1 / 2000:.0%}"
