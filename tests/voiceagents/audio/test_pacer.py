import asyncio

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from voiceagents.audio import ALAW_8K, MULAW_8K, PCM16_16K, AudioFormat, Pacer, PacerRunner

F = 0.02  # seconds per frame


def drain(pacer: Pacer, start: float, until: float, step: float = F):
    """Pull every ``step`` seconds from ``start`` to ``until``; returns (time, frame) pairs."""
    out, now = [], start
    while now <= until + 1e-9:
        out.extend((now, frame) for frame in pacer.pull(now))
        now = round(now + step, 9)
    return out


def test_frame_size_follows_the_carrier_format():
    assert Pacer(MULAW_8K).frame_bytes == 160
    assert Pacer(PCM16_16K).frame_bytes == 640
    assert Pacer(AudioFormat("pcm16", 22050)).frame_bytes == 882


def test_sends_the_lead_at_once_then_one_frame_per_20_ms():
    pacer = Pacer(MULAW_8K, lead_ms=80)
    pacer.push(b"\x01" * 160 * 10)
    sent = drain(pacer, 100.0, 100.2)
    times = [round(t - 100.0, 3) for t, _ in sent]
    assert times == [0, 0, 0, 0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12]
    assert [f.start_ms for _, f in sent] == [20.0 * i for i in range(10)]
    assert [round(f.play_at - 100.0, 3) for _, f in sent] == [0.02 * i for i in range(10)]
    assert pacer.sent_ms == 200 and pacer.queued_ms == 0


def test_reports_sent_queued_and_played_exactly():
    pacer = Pacer(MULAW_8K, lead_ms=60)
    pacer.push(b"\x01" * 1000)  # 6 whole frames and 40 bytes (125 ms)
    assert pacer.queued_ms == 125.0
    pacer.pull(0.0)
    assert pacer.sent_ms == 60 and pacer.queued_ms == 65.0
    assert pacer.buffered_ms(0.0) == pytest.approx(60)
    assert pacer.played_ms(0.035) == pytest.approx(35)
    assert pacer.next_due(0.0) == pytest.approx(0.02)


def test_waits_for_a_partial_frame_and_pads_it_at_segment_end():
    for fmt, pad in ((MULAW_8K, b"\xff"), (ALAW_8K, b"\xd5"), (PCM16_16K, b"\x00")):
        pacer = Pacer(fmt)
        pacer.push(b"\x01" * 100)
        assert pacer.pull(0.0) == []
        pacer.end_segment("seg-1")
        (frame,) = pacer.pull(0.0)
        assert frame.data == b"\x01" * 100 + pad * (pacer.frame_bytes - 100)
        assert frame.marks == ("seg-1",)


def test_mark_with_nothing_queued_comes_out_alone():
    pacer = Pacer(MULAW_8K)
    pacer.end_segment("empty")
    (item,) = pacer.pull(1.0)
    assert item.data == b"" and item.marks == ("empty",)
    assert pacer.sent_ms == 0


def test_an_underrun_restarts_the_grid_from_now():
    pacer = Pacer(MULAW_8K, lead_ms=40)
    pacer.push(b"\x01" * 320)
    assert len(pacer.pull(0.0)) == 2
    pacer.push(b"\x02" * 480)
    (late, *_rest) = pacer.pull(5.0)
    assert late.play_at == 5.0
    assert pacer.played_ms(5.0) == pytest.approx(40)


def test_clear_drops_the_queue_and_the_carriers_unplayed_lead():
    pacer = Pacer(MULAW_8K, lead_ms=80)
    pacer.push(b"\x01" * 160 * 50)
    drain(pacer, 0.0, 0.1)  # 4 frames at once and one per 20 ms after: 9 frames, 180 ms
    assert pacer.sent_ms == 180
    heard_before = pacer.played_ms(0.105)
    result = pacer.clear(0.105)
    assert result.dropped_queued_ms == 41 * 20
    assert result.dropped_at_carrier_ms == pytest.approx(180 - 105)
    assert result.played_ms == pytest.approx(heard_before) == pytest.approx(105)
    assert pacer.queued_ms == 0 and pacer.pull(0.2) == [] and pacer.next_due(0.2) is None
    assert pacer.played_ms(10.0) == pytest.approx(105)
    pacer.push(b"\x03" * 160)
    (frame,) = pacer.pull(0.3)
    assert frame.data == b"\x03" * 160 and frame.play_at == 0.3


actions = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(1, 900)),
        st.tuples(st.just("push"), st.integers(900, 8000)),  # a backlog
        st.tuples(st.just("pull"), st.integers(0, 70)),
        st.tuples(st.just("pull"), st.integers(100, 600)),  # a stall: the pacer catches up
        st.tuples(st.just("end"), st.booleans()),
        st.tuples(st.just("clear"), st.integers(0, 30)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(actions, st.sampled_from([MULAW_8K, PCM16_16K]), st.sampled_from([20, 60, 80, 200]))
# A mark-only item at the end of what was sent: it adds no play time at the carrier.
@example([("push", 1), ("end", False), ("pull", 0), ("end", True), ("pull", 0)], MULAW_8K, 20)
def test_pacer_invariants(script, fmt, lead_ms):
    pacer = Pacer(fmt, lead_ms=lead_ms)
    now, pushed, emitted, dropped, stream_out = 0.0, 0, 0.0, 0.0, 0.0
    for action, arg in script:
        if action == "push":
            pacer.push(b"\x01" * arg)
            pushed += arg
        elif action == "pull":
            now += arg / 1000
            for frame in pacer.pull(now):
                assert len(frame.data) in (0, pacer.frame_bytes)
                # Never more than the lead at the carrier, in play time (a mark-only item takes
                # none: it fires where the audio before it ends).
                plays_s = pacer.frame_ms / 1000 if frame.data else 0.0
                assert frame.play_at + plays_s - now <= lead_ms / 1000 + 1e-9
                if frame.data:
                    # Stall recovery: a frame may stand for two of the stream, never more.
                    assert frame.end_ms - frame.start_ms in (pacer.frame_ms, 2 * pacer.frame_ms)
                    emitted += (frame.end_ms - frame.start_ms) * fmt.bytes_per_second / 1000
                    stream_out += frame.end_ms - frame.start_ms
            # Stream ms at the carrier: at most the lead played at 1.5x, plus one spliced frame.
            assert pacer.buffered_ms(now) <= 1.5 * lead_ms + pacer.frame_ms + 1e-6
        elif action == "end":
            before = pacer.queued_ms
            pacer.end_segment("m" if arg else None)
            pushed += round((pacer.queued_ms - before) * fmt.bytes_per_second / 1000)
        else:
            now += arg / 1000
            before = pacer.played_ms(now)
            result = pacer.clear(now)
            dropped += result.dropped_queued_ms
            assert pacer.queued_ms == 0 and pacer.pull(now) == []
            assert result.played_ms == pytest.approx(before)
        assert pacer.sent_ms == pytest.approx(stream_out)
        accounted = emitted + fmt.bytes_per_second * (pacer.queued_ms + dropped) / 1000
        assert accounted == pytest.approx(pushed)
        assert 0 <= pacer.played_ms(now) <= pacer.sent_ms


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_runner_sends_frames_and_marks_on_the_virtual_grid():
    clock, sent = VirtualClock(), []

    async def send_frame(data):
        sent.append(("frame", clock.now, data[:1]))

    async def send_mark(name):
        sent.append(("mark", clock.now, name))

    runner = PacerRunner(
        Pacer(MULAW_8K, lead_ms=40), send_frame, send_mark, clock=clock, sleep=clock.sleep
    )
    task = asyncio.create_task(runner.run())
    runner.push(b"\x01" * 160 * 4 + b"\x02" * 10)
    runner.end_segment("done")
    for _ in range(50):
        await asyncio.sleep(0)
    runner.close()
    await asyncio.wait_for(task, 5)
    assert [kind for kind, *_ in sent] == ["frame"] * 5 + ["mark"]
    assert [round(t, 3) for _, t, _ in sent] == [0, 0, 0.02, 0.04, 0.06, 0.06]
    assert sent[4][2] == b"\x02" and sent[-1][2] == "done"


async def stop_once_sent(runner, task, sent, count):
    """Wait (up to 2 s) until ``count`` frames are in ``sent``, then stop the runner."""
    for _ in range(200):
        if len(sent) >= count:
            break
        await asyncio.sleep(0.01)
    runner.close()
    await asyncio.wait_for(task, 2)


async def test_runner_on_the_real_loop_delivers_everything_and_stops():
    frames, played = [], []

    async def send_frame(data):
        frames.append(data)

    runner = PacerRunner(Pacer(MULAW_8K, lead_ms=40), send_frame, on_frame=played.append)
    task = asyncio.create_task(runner.run())
    runner.push(b"\x05" * 160 * 5)
    await stop_once_sent(runner, task, frames, 5)
    assert frames == [b"\x05" * 160] * 5
    assert [f.start_ms for f in played] == [0, 20, 40, 60, 80]
    assert runner.clear().dropped_queued_ms == 0


async def test_audio_due_on_arrival_goes_out_from_the_pushing_task_and_a_burst_keeps_its_grid():
    clock, sent = VirtualClock(), []

    async def send_frame(data):
        sent.append((clock.now, data[:1]))

    runner = PacerRunner(Pacer(MULAW_8K, lead_ms=40), send_frame, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0)  # the runner is idle, waiting
    runner.push(b"\x01" * 160, wake=False)
    await runner.send_due()
    assert sent == [(0, b"\x01")]  # sent before the loop ran anything else
    # A burst: the lead goes out at once, the rest on the 20 ms grid, timed by the runner.
    runner.push(b"\x02" * 160 * 4, wake=False)
    await runner.send_due()
    assert sent == [(0, b"\x01"), (0, b"\x02")]
    for _ in range(50):
        await asyncio.sleep(0)
    runner.close()
    await asyncio.wait_for(task, 5)
    assert [(round(t, 3), d) for t, d in sent] == [
        (0, b"\x01"),
        (0, b"\x02"),
        (0.02, b"\x02"),
        (0.04, b"\x02"),
        (0.06, b"\x02"),
    ]


def first_send_stalls():
    """A send_frame whose first call suspends until ``release`` is set (the carrier pushes back);
    ``calls`` records each call, ``sent`` each completed send."""
    sent, calls, release = [], [], asyncio.Event()

    async def send_frame(data):
        calls.append(data[:1])
        if len(calls) == 1:
            await release.wait()
        sent.append(data[:1])

    return send_frame, sent, calls, release


async def test_send_due_never_overtakes_a_send_under_way():
    send_frame, sent, calls, release = first_send_stalls()
    # An 80 ms lead: the third frame is due at once, so only the rule keeps it back.
    runner = PacerRunner(Pacer(MULAW_8K, lead_ms=80), send_frame)
    task = asyncio.create_task(runner.run())
    runner.push(b"\x01" * 160 * 2)  # run() sends these, and stalls in the first
    for _ in range(5):
        await asyncio.sleep(0)
    runner.push(b"\x02" * 160, wake=False)
    await runner.send_due()  # a send is under way: it leaves the frame to it
    assert sent == []
    release.set()
    await stop_once_sent(runner, task, sent, 3)
    assert sent == [b"\x01", b"\x01", b"\x02"]


async def test_the_runner_never_overtakes_a_send_due_under_way():
    send_frame, sent, calls, release = first_send_stalls()
    runner = PacerRunner(Pacer(MULAW_8K, lead_ms=80), send_frame)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0)
    runner.push(b"\x01" * 160, wake=False)
    sending = asyncio.create_task(runner.send_due())  # stalls in its send
    await asyncio.sleep(0)
    runner.push(b"\x02" * 160)  # wakes the runner while send_due() is sending
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent == [] and calls == [b"\x01"]
    release.set()
    await sending
    await stop_once_sent(runner, task, sent, 2)
    assert sent == [b"\x01", b"\x02"]
