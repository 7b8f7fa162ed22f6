"""StallWatch and PacerRunner on a real event loop, with a real blocking call in a callback."""

import asyncio
import time

import pytest

from voiceagents.audio import MULAW_8K, Pacer, PacerRunner, g711
from voiceagents.audio.stallwatch import AFTERMATH_S, StallWatch

from .test_pacer_stall import voiced


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def test_a_blocking_callback_shows_as_a_blocked_interval():
    loop = asyncio.get_running_loop()
    watch = StallWatch.of(loop)
    assert StallWatch.of(loop) is watch
    watch.acquire()
    try:
        await asyncio.sleep(0.1)
        blocked = loop.create_future()

        def stall():
            start = loop.time()
            time.sleep(0.3)
            # Seen at once by the first callback after it, before the watch's own tick runs.
            blocked.set_result((start, watch.stall_before(loop.time())))

        loop.call_soon(stall)
        start, during = await blocked
        assert during is not None and during[0] <= start + 0.021 and during[1] >= start + 0.3
        await until(lambda: len(watch.blocked) == 1)
        (recorded,) = watch.blocked
        assert recorded[1] - recorded[0] >= 0.3 - 0.021
        await asyncio.sleep(AFTERMATH_S + 0.05)
        assert watch.stall_before(loop.time()) is None  # long after: a provider's own pause
    finally:
        watch.release()


async def test_runner_wins_back_a_real_stall():
    loop = asyncio.get_running_loop()
    sent = []

    async def send_frame(data):
        sent.append(loop.time())

    pacer = Pacer(MULAW_8K, lead_ms=80)
    runner = PacerRunner(pacer, send_frame)
    task = asyncio.ensure_future(runner.run())
    try:
        runner.push(g711.ulaw_encode(voiced(3000)))
        await until(lambda: len(sent) >= 20)
        loop.call_soon(time.sleep, 0.4)
        await until(lambda: pacer.stalled_ms > 0)
        assert pacer.stalled_ms >= 300  # the 400 ms stall minus the 80 ms lead, less a busy margin
        await until(lambda: pacer.queued_ms == 0, timeout=10)
        assert pacer.recovered_ms == pytest.approx(pacer.stalled_ms, abs=20)
        assert pacer.sent_ms == pytest.approx(3000)
    finally:
        runner.close()
        await task
