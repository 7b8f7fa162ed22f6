"""CPU cost of the speakerphone echo check per caller frame (``make bench``).

Reported, not only asserted (docs/interruptions.md has the figures). CPU time of this thread,
so that a busy machine preempting the test does not count as cost. The check runs
only while agent audio was sent within the window; that is the case measured here (the worst).
"""

import time

import numpy as np
import pytest

from bench import tagging
from tests.voiceagents.audio.echo_signals import delayed, speechlike
from voiceagents.audio.echo import EchoDetector
from voiceagents.audio.formats import MULAW_8K, PCM16_16K
from voiceagents.audio.g711 import ulaw_encode

pytestmark = pytest.mark.bench


@pytest.mark.parametrize(
    "fmt,rate,max_delay_ms,mic_kind",
    [
        (MULAW_8K, 8000, 400, "echo"),
        (MULAW_8K, 8000, 1000, "echo"),
        (PCM16_16K, 16000, 400, "echo"),
        # The caller talking over the agent: no echo path to follow (searches back off).
        (MULAW_8K, 8000, 400, "talk"),
        # The load bench's calls (make bench, echo mode): caller and agent send the same
        # tagged filler frames at the same level, all the time.
        (MULAW_8K, 8000, 400, "filler"),
    ],
)
def test_echo_check_cost_per_frame(fmt, rate, max_delay_ms, mic_kind):
    agent = speechlike(5000, 120, seed=1, rate=rate)
    if mic_kind == "echo":
        mic = delayed(agent, rate // 10, -10)
    else:
        mic = speechlike(5000, 190, seed=2, rate=rate)
    if mic_kind == "filler":
        agent_b = mic_b = b"".join(tagging.tagged(i) for i in range(250))
        width = 1
    elif fmt == MULAW_8K:
        agent_b, mic_b = (ulaw_encode(x.astype(np.int16)) for x in (agent, mic))
        width = 1
    else:
        agent_b, mic_b = (x.astype("<i2").tobytes() for x in (agent, mic))
        width = 2
    frame = rate // 50 * width
    detector = EchoDetector(fmt, fmt, max_delay_ms=max_delay_ms, lead_ms=80)
    check, play = [], []
    for index in range(len(mic_b) // frame - 4):
        now = index * 0.02
        started = time.thread_time()
        detector.played(agent_b[(index + 4) * frame : (index + 5) * frame], now)
        play.append(time.thread_time() - started)
        started = time.thread_time()
        detector.is_echo(mic_b[index * frame : (index + 1) * frame], now)
        check.append(time.thread_time() - started)
    p50, p99 = (np.percentile(check, q) * 1e6 for q in (50, 99))
    mean = np.mean(check) * 1e6
    played = np.percentile(play, 50) * 1e6
    print(
        f"\necho check {fmt} window {max_delay_ms} ms, mic {mic_kind}: {p50:.0f} us p50, "
        f"{mean:.0f} us mean, {p99:.0f} us p99 per caller frame; {played:.0f} us p50 per agent frame"
    )
    # 20 ms of audio per frame: the bar is 2.5 % of one core per call at the median.
    assert p50 < 500
