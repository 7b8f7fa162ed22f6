"""False interruptions on a Twilio call answered by OpenAI Realtime, with the fake's server VAD on.

The fake OpenAI detects speech in the audio it receives (energy VAD, as server VAD does), cancels
its reply on a speech start, commits the turn on a pause, transcribes it (nothing for a sound too
short to hold words) and answers it. The fake caller plays what it receives in real time.

- A 150 ms noise burst while the agent speaks cuts it (the clear cannot wait), but the agent
  comes back with the rest of its answer within a second or so instead of answering the noise or
  leaving silence.
- A speakerphone caller sends the agent's own voice back, 120 ms late at -10 dB: it does not
  interrupt; the caller speaking over the agent still does.
"""

import asyncio

import numpy as np
import pytest

from tests.calls.harness import ended_call
from tests.calls.speakerphone import SpeakerphoneCaller
from tests.fakes.openai_realtime import ScriptedResponse, ServerVAD
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.models import CallEvent
from voiceagents.providers.openai_realtime import RESUME_INSTRUCTIONS

pytestmark = pytest.mark.django_db(transaction=True)

FRAME = 160  # 20 ms of μ-law
SILENCE = b"\xff" * FRAME


def ulaw_tone(ms: int, freq: float, amplitude: float = 8000.0) -> bytes:
    t = np.arange(ms * 8) / 8000.0
    return ulaw_encode((amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def speechlike(ms: int, f0: float, seed: int, peak: float = 12000.0) -> np.ndarray:
    """A voiced, syllable-modulated signal with a wandering pitch: correlates with itself like
    speech does, unlike a pure tone (which matches itself at every lag)."""
    rng = np.random.default_rng(seed)
    n = ms * 8
    t = np.arange(n) / 8000
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6))
    phase = 2 * np.pi * np.cumsum(pitch) / 8000
    signal = sum(
        np.sin(k * phase + rng.random() * 6)
        * (1 + np.sin(2 * np.pi * (3 + k * 0.37) * t + rng.random() * 6))
        / k
        for k in range(1, 15)
    )
    signal = signal * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.random() * 6))
    signal = signal + 0.05 * rng.standard_normal(n)
    return signal / np.abs(signal).max() * peak


async def start_call(create_call, connect_caller):
    setup = await create_call()
    _, caller = await connect_caller()
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    return setup, caller


async def test_a_noise_burst_does_not_cut_the_agent_off(create_call, connect_caller, fake_openai):
    fake_openai.vad = ServerVAD()
    greeting = ulaw_tone(3000, 440)
    noise_reply = ulaw_tone(600, 660)  # what the model says to the noise: never heard
    rest = ulaw_tone(1500, 880)  # the rest of the answer, asked for by the session
    fake_openai.responses += [
        ScriptedResponse(audio=greeting, transcript="A long greeting, in two sentences."),
        # The model takes its time before answering the noise (the session resumes first).
        ScriptedResponse(audio=noise_reply, transcript="Sorry, did you say something?", delay=1.0),
        ScriptedResponse(audio=rest, transcript="In two sentences."),
    ]
    setup, caller = await start_call(create_call, connect_caller)
    await fake_openai.wait_for(lambda: caller.media_in)
    rng = np.random.default_rng(7)
    burst = ulaw_encode((rng.standard_normal(150 * 8) * 6000).clip(-32000, 32000).astype(np.int16))
    audio = SILENCE * 35 + burst + SILENCE * 150  # 0.7 s, the 150 ms burst, 3 s
    streaming = asyncio.ensure_future(caller.stream_audio(audio, realtime=True))

    await fake_openai.wait_for(lambda: caller.clears, timeout=5)  # the burst cut the greeting
    loop = asyncio.get_running_loop()
    cut_at, cut_bytes = loop.time(), len(caller.media_in)
    await fake_openai.wait_for(lambda: rest[:FRAME] in bytes(caller.media_in), timeout=5)
    # The caller heard the rest of the answer soon after the cut: the clear, the VAD's pause
    # (200 ms), the verdict and a reply; on an idle machine about 0.3 s.
    resumed_at = next(t for t, total in caller.media_times if total > cut_bytes)
    print("gap from the clear to the resumed answer (s):", round(resumed_at - cut_at, 3))
    assert resumed_at - cut_at < 1.5
    await streaming
    await caller.stop()
    await caller.wait_closed()

    heard = bytes(caller.media_in)
    assert noise_reply[:FRAME] not in heard  # the model's answer to the noise was cancelled
    assert heard.endswith(rest[-FRAME * 10 :])  # ...and the rest played to its end
    assert fake_openai.session.vad_turns[0][2] == ""  # the fake heard a noise, not words
    asks = fake_openai.events_of("response.create")
    assert RESUME_INSTRUCTIONS in asks[-1]["response"]["instructions"]
    assert "You work for Acme." in asks[-1]["response"]["instructions"]
    assert fake_openai.events_of("conversation.item.truncate")  # the model knows what was heard

    call = await ended_call(setup.call.pk)
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["false_interruptions"] == 1
    events = [e async for e in CallEvent.objects.filter(call=call, kind="false_interruption")]
    assert len(events) == 1
    assert events[0].data["resumed"] is True
    assert 0 < events[0].data["audio_end_ms"] < 3000


async def test_words_after_a_barge_in_are_a_real_interruption(
    create_call, connect_caller, fake_openai
):
    fake_openai.vad = ServerVAD()
    fake_openai.responses += [
        ScriptedResponse(audio=ulaw_tone(3000, 440), transcript="A long greeting."),
        ScriptedResponse(audio=ulaw_tone(600, 660), transcript="Yes?", delay=0.2),
    ]
    setup, caller = await start_call(create_call, connect_caller)
    await fake_openai.wait_for(lambda: caller.media_in)
    words = ulaw_encode(speechlike(600, 200, seed=3).astype(np.int16))
    await caller.stream_audio(SILENCE * 35 + words + SILENCE * 75, realtime=True)
    await fake_openai.wait_for(lambda: ulaw_tone(600, 660)[:FRAME] in bytes(caller.media_in))
    await caller.stop()
    await caller.wait_closed()

    assert caller.clears == 1
    assert fake_openai.session.vad_turns[0][2]  # words
    assert not any(
        RESUME_INSTRUCTIONS in (e.get("response") or {}).get("instructions", "")
        for e in fake_openai.events_of("response.create")
    )
    call = await ended_call(setup.call.pk)
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["false_interruptions"] == 0


@pytest.mark.parametrize("delay_ms", [60, 200])
async def test_the_agents_own_echo_does_not_interrupt_but_the_caller_does(
    create_call, connect_caller, fake_openai, delay_ms, voiceagents_settings
):
    voiceagents_settings["ECHO_SUPPRESSION"] = True
    fake_openai.vad = ServerVAD()
    agent = ulaw_encode(speechlike(4000, 120, seed=1).astype(np.int16))
    fake_openai.responses += [
        ScriptedResponse(audio=agent, transcript="A long answer."),
        ScriptedResponse(audio=ulaw_tone(400, 660), transcript="Yes?"),
    ]
    setup, caller = await start_call(create_call, connect_caller)
    await fake_openai.wait_for(lambda: caller.media_in)
    phone = SpeakerphoneCaller(caller, delay_ms=delay_ms, gain_db=-10)
    voice = speechlike(800, 210, seed=5)
    talking = asyncio.ensure_future(phone.run(3.6, voice_at=2.5, voice=voice))
    loop = asyncio.get_running_loop()
    began = loop.time()
    await fake_openai.wait_for(lambda: caller.clears, timeout=6)
    cleared_after = loop.time() - began
    await talking
    await caller.stop()
    await caller.wait_closed()

    # For 2.5 s the microphone carried only the agent's echo (loud enough for the VAD: without
    # echo suppression it interrupts within the first half second); the caller's own voice then
    # cut the agent off.
    assert cleared_after > 2.4
    assert phone.echo_frames > 50
    assert len(fake_openai.session.vad_turns) >= 1
    assert fake_openai.session.vad_turns[0][0] >= 2400
    call = await ended_call(setup.call.pk)
    assert call.metrics["echo_frames"] > 50
    assert call.metrics["barge_ins"] == 1
