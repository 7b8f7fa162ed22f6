"""Playback: marks every interval, the heard position they bound, and what a clear forgets."""

import asyncio

import pytest

from voiceagents.audio import MULAW_8K
from voiceagents.call.metrics import CallMetrics
from voiceagents.call.playback import Playback


class RecordingCarrier:
    carrier_format = caller_format = MULAW_8K

    def __init__(self, has_marks: bool = True):
        self.has_marks = has_marks
        self.sent: list[tuple[str, str]] = []

    async def send_media(self, payload: str) -> None:
        self.sent.append(("media", payload))

    async def send_mark(self, name: str) -> None:
        self.sent.append(("mark", name))

    async def send_clear(self) -> None:
        self.sent.append(("clear", ""))

    async def end_call(self) -> None:
        pass


async def played(
    ms: int, *, has_marks: bool = True, lead_ms: int = 0
) -> tuple[Playback, RecordingCarrier]:
    """A playback that has sent ``ms`` of audio at once (its lead covers it all)."""
    carrier = RecordingCarrier(has_marks)
    playback = Playback(carrier, CallMetrics(), lead_ms=lead_ms or ms, mark_interval_ms=100)
    assert playback.push(b"\xff" * MULAW_8K.bytes_for_ms(ms)) == ms
    await playback.send_due()
    return playback, carrier


def marks(carrier: RecordingCarrier) -> list[str]:
    return [name for kind, name in carrier.sent if kind == "mark"]


async def test_a_mark_every_interval_named_by_its_position():
    playback, carrier = await played(400)
    assert sum(kind == "media" for kind, _ in carrier.sent) == 20
    assert marks(carrier) == ["100", "200", "300", "400"]
    assert playback.metrics.marks_sent == 4 and playback.metrics.frames_out == 20


async def test_heard_position_is_bounded_by_the_marks():
    playback, _ = await played(400)
    later = asyncio.get_running_loop().time() + 10  # by the clock, everything has played
    assert playback.heard_ms(later) == 100  # ... but "100" is not echoed yet
    playback.mark_echoed("100")
    playback.mark_echoed("200")
    assert playback.heard_ms(later) == 300
    assert playback.metrics.marks_acked == 2
    playback.mark_echoed("400")
    assert playback.heard_ms(later) == 400


async def test_without_marks_the_clock_estimate_is_what_was_heard():
    playback, carrier = await played(400, has_marks=False)
    assert marks(carrier) == []
    now = asyncio.get_running_loop().time()
    assert playback.heard_ms(now + 10) == 400
    # The pacer's real-time estimate (its clock is read once per batch, ours at the first frame).
    assert playback.heard_ms(now) == pytest.approx(400 - playback.buffered_ms(now), abs=1)


async def test_clear_drops_the_queue_and_ignores_the_marks_echoed_after_it():
    playback, carrier = await played(400)
    playback.push(b"\xff" * 800)  # queued behind the lead
    assert playback.is_playing(asyncio.get_running_loop().time())
    await playback.clear()
    assert carrier.sent[-1] == ("clear", "")
    assert playback.pacer.queued_ms == 0
    playback.mark_echoed("300")  # echoed at once by the carrier's clear, never played
    assert playback.metrics.marks_acked == 0
    assert not playback.is_playing(asyncio.get_running_loop().time() + 10)


async def test_end_segment_pads_to_a_frame_and_marks_it():
    playback, carrier = await played(100, lead_ms=200)
    pos = playback.push(b"\xff" * 100)  # 12.5 ms
    assert pos == 112.5
    assert playback.end_segment() == 120
    await playback.send_due()
    assert marks(carrier)[-1] == "120"
