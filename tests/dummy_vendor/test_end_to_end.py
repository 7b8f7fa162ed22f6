"""A whole call through a carrier and a provider that only this test package defines.

Nothing under ``voiceagents/`` or ``telephony/`` names Dummy Tel or Dummy Voice: the registries
(``conftest.py``) are the one place that knows them. The call greets, hears the caller, is
interrupted, gets a key press and hangs up, and leaves what every call leaves: a completed row,
its transcript with the interrupted turn, a timeline, metrics and a stereo recording.
"""

from __future__ import annotations

import wave

import pytest

from tests.calls.harness import ended_call
from tests.telephony.media_cases import wait_until
from voiceagents.models import CallEvent, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_call_through_a_dummy_carrier_and_a_dummy_provider(
    dummy_harness, media_streams, fake_voice
):
    fake_voice.replies.append([b"\x10\x00" * 320])  # the greeting: 20 ms
    incoming, caller, transport = await media_streams.call(dummy_harness)

    # The first message is spoken, played and acknowledged by the carrier's checkpoints.
    await wait_until(lambda: fake_voice.said == ["Hello from Dummy!"])
    await wait_until(lambda: len(caller.media_in) >= 640 and caller.checkpoints_played)

    # Caller audio reaches the provider as the carrier sent it (both are 16 kHz PCM16).
    spoken = bytes(range(256)) * 5
    await caller.media(spoken[:640])
    await caller.media(spoken[640:1280])
    await wait_until(lambda: spoken[:1280] in bytes(fake_voice.audio_in))

    # A long reply, interrupted by the caller after some of it has played.
    fake_voice.replies.append([b"\x20\x00" * 320] * 100)  # 2 s in 20 ms chunks
    fake_voice.speak("A long answer that the caller cuts short.")
    await wait_until(lambda: len(caller.media_in) >= 640 + 16 * 640)
    await fake_voice.caller_says("Wait, one question.")
    await wait_until(lambda: caller.flushes == 1 and fake_voice.stops)
    assert 0 < fake_voice.stops[0] < 2000

    # Dummy Voice answers a key press by saying it.
    played = len(caller.checkpoints_played)
    await caller.dtmf("5")
    await wait_until(lambda: "key 5" in fake_voice.said)
    await wait_until(lambda: len(caller.checkpoints_played) > played)
    await caller.stop()
    call = await ended_call(incoming.call_id)

    assert call.status == CallStatus.COMPLETED
    assert call.carrier == "dummy_tel" and call.provider == "dummy_voice"
    assert call.end_reason == "caller_hangup"
    assert call.metrics["barge_ins"] == 1
    assert call.metrics["marks_acked"] >= 1
    assert call.metrics["frames_in"] == 2

    turns = [t async for t in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert [(t.role, t.text, t.interrupted) for t in turns] == [
        ("agent", "Hello from Dummy!", False),
        ("agent", "A long answer that the caller cuts short.", True),
        ("caller", "Wait, one question.", False),
        ("agent", "key 5", False),
    ]
    interrupted = turns[1]
    assert interrupted.end_ms - interrupted.start_ms == pytest.approx(fake_voice.stops[0], abs=25)

    kinds = {e.kind async for e in CallEvent.objects.filter(call=call)}
    assert {"status", "barge_in", "dtmf"} <= kinds

    with call.recording.open("rb") as handle, wave.open(handle) as recording:
        assert recording.getnchannels() == 2
        assert recording.getnframes() > 0
