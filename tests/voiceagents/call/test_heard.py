"""Heard audio from evidence: round trip and jitter buffer measured per call, and the playout line
that echoes set (voiceagents/call/delay.py, voiceagents/call/playback.py), on a virtual clock.

The carrier here is a script: each test says when it echoes which mark, as a carrier behind a
one-way delay of 50 ms holding 80 ms of jitter buffer would. The same model runs in real time, for
Twilio and Telnyx, in tests/calls/test_heard_accounting.py.
"""

import pytest

from voiceagents.audio import MULAW_8K
from voiceagents.call.delay import DelayEstimator
from voiceagents.call.metrics import CallMetrics
from voiceagents.call.playback import Playback

from .test_playback import RecordingCarrier, marks

D, J = 0.050, 0.080  # one-way delay and jitter buffer of the scripted carrier, s


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def playback(has_marks: bool = True) -> tuple[Playback, RecordingCarrier, Clock]:
    clock = Clock()
    carrier = RecordingCarrier(has_marks)
    # A lead of a whole second: every push goes out at once, so the clock alone moves playout.
    pb = Playback(carrier, CallMetrics(), lead_ms=1000, mark_interval_ms=100, clock=clock)
    return pb, carrier, clock


async def send(pb: Playback, ms: int) -> None:
    pb.push(b"\xff" * MULAW_8K.bytes_for_ms(ms))
    await pb.send_due()


def test_estimator_is_none_until_measured_then_the_median_of_recent_samples():
    est = DelayEstimator()
    assert est.delay_ms is None and est.jitter_ms is None
    for rtt in (0.100, 0.102, 0.350, 0.098):  # one echo read late by a busy loop
        est.rtt_sample(rtt)
    # Half the median of the last three round trips, not pulled up by the outlier.
    assert est.delay_ms == 51.0
    est.rtt_sample(5.0)  # a stall, not a network delay: not a sample
    assert est.delay_ms == 51.0
    est.jitter_sample(-0.002)  # noise around zero
    assert est.jitter_ms == 0.0
    for _ in range(2):
        est.rtt_sample(0.060)  # the delay fell: the window follows within two samples
    assert est.delay_ms == 30.0


async def test_probe_measures_the_round_trip_only_when_nothing_is_queued():
    pb, carrier, clock = playback()
    assert await pb.probe()
    name = marks(carrier)[-1]
    assert not await pb.probe()  # one probe at a time
    clock.t += 2 * D
    pb.mark_echoed(name)
    assert pb.delay_ms == pytest.approx(50.0)
    await send(pb, 200)
    assert not await pb.probe()  # audio at the carrier: an echo would wait behind it
    assert pb.metrics.marks_acked == 0  # probes are not audio marks


async def test_heard_follows_the_echoes_under_delay_and_jitter_buffer():
    pb, carrier, clock = playback()
    await pb.probe()
    clock.t += 2 * D
    pb.mark_echoed(marks(carrier)[-1])
    s0 = clock.t = 100.2
    await send(pb, 400)
    assert marks(carrier)[-4:] == ["100", "200", "300", "400"]
    # The carrier starts playing at s0 + D + J; mark 100 plays 100 ms later, its echo takes D.
    clock.t = s0 + D + J + 0.100 + D
    pb.mark_echoed("100")
    assert pb.jitter_ms == pytest.approx(80.0)
    # A clear sent now reaches the carrier D later: what has played by then is heard.
    clock.t += 0.020
    truth = (clock.t + D - (s0 + D + J)) * 1000
    assert pb.heard_ms(clock.t) == pytest.approx(truth)
    # The old accounting (sent - buffered, capped by the first unechoed mark) said 200 here.
    assert truth == pytest.approx(220.0)


async def test_before_the_first_echo_the_measured_jitter_buffer_is_used():
    pb, carrier, clock = playback()
    await pb.probe()
    clock.t += 2 * D
    pb.mark_echoed(marks(carrier)[-1])
    pb.delay.jitter_sample(J)  # learnt on an earlier reply
    s0 = clock.t
    await send(pb, 400)
    clock.t = s0 + 0.150  # no echo yet (the first is due at s0 + D + J + 100 ms + D)
    assert pb.heard_ms(clock.t) == pytest.approx((0.150 - J) * 1000)
    clock.t = s0 + 0.050  # still in the jitter buffer when the clear would arrive
    assert pb.heard_ms(clock.t) == 0


async def test_a_clear_times_the_round_trip_with_the_marks_it_returns():
    pb, carrier, clock = playback()
    pb.delay.rtt_sample(2 * D)
    pb.delay.jitter_sample(J)
    s0 = clock.t
    await send(pb, 400)
    clock.t = s0 + 0.200
    heard = pb.heard_ms(clock.t)
    assert heard == pytest.approx(120.0)
    await pb.clear()
    assert pb.heard_ms(clock.t + 1) == pytest.approx(heard)  # nothing more plays after a clear
    clock.t += 2 * D + 0.030  # the delay grew: the returned marks say so
    for name in ("100", "200", "300", "400"):
        pb.mark_echoed(name)
    assert pb.metrics.marks_acked == 0
    assert pb.delay.rtt_s == pytest.approx((2 * D + 2 * D + 0.030) / 2)  # median of two


async def test_a_late_first_echo_alone_does_not_move_the_line_later():
    pb, carrier, clock = playback()
    pb.delay.rtt_sample(2 * D)
    for _ in range(3):  # earlier replies: the late echo's jitter sample is outvoted
        pb.delay.jitter_sample(J)
    s0 = clock.t
    await send(pb, 400)
    clock.t = s0 + D + J + 0.100 + D + 0.040  # read 40 ms late by a busy event loop
    pb.mark_echoed("100")
    on_time = (clock.t + D - (s0 + D + J)) * 1000
    assert pb.heard_ms(clock.t) == pytest.approx(on_time)
    clock.t = s0 + D + J + 0.200 + D  # the next one on time
    pb.mark_echoed("200")
    assert pb.heard_ms(clock.t) == pytest.approx(300.0)


async def test_a_carrier_that_stops_playing_is_not_over_counted():
    pb, carrier, clock = playback()
    pb.delay.rtt_sample(2 * D)
    s0 = clock.t
    await send(pb, 400)
    clock.t = s0 + D + 0.100 + D
    pb.mark_echoed("100")
    clock.t += 5.0  # no echo since: the carrier stalled
    assert pb.heard_ms(clock.t) == pytest.approx(200 + 2 * D * 1000)


async def test_without_marks_the_pacer_clock_with_no_jitter_assumed():
    pb, carrier, clock = playback(has_marks=False)
    assert not await pb.probe()
    s0 = clock.t
    await send(pb, 400)
    assert marks(carrier) == []
    clock.t = s0 + 0.150
    assert pb.heard_ms(clock.t) == pytest.approx(150.0)
    assert pb.delay_ms is None and pb.jitter_ms is None


async def test_audio_right_after_a_clear_starts_a_new_run():
    pb, carrier, clock = playback()
    pb.delay.rtt_sample(2 * D)
    pb.delay.jitter_sample(J)
    s0 = clock.t
    await send(pb, 400)
    clock.t = s0 + 0.150
    await pb.clear()
    heard = pb.heard_ms(clock.t)
    clock.t += 2 * D  # the returned marks time the round trip...
    for name in ("100", "200", "300", "400"):
        pb.mark_echoed(name)
    assert pb.heard_ms(clock.t) == pytest.approx(heard)  # ... and nothing more was heard
    s1 = clock.t  # the next reply, while the cleared audio would still have been playing
    await send(pb, 400)
    clock.t = s1 + J + 0.050
    assert pb.heard_ms(clock.t) == pytest.approx(400 + 50.0)


async def test_a_probe_never_echoed_does_not_stop_probing():
    pb, carrier, clock = playback()
    assert await pb.probe()
    clock.t += 1.0
    assert not await pb.probe()  # its echo may still come
    clock.t += 1.5
    assert await pb.probe()  # lost: probe afresh
    assert marks(carrier) == ["probe-1", "probe-2"]
