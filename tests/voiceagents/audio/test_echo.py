"""The speakerphone echo detector: echoes of the agent are found, the caller's own voice is not."""

import numpy as np
import pytest

from tests.voiceagents.audio.echo_signals import delayed, speechlike
from voiceagents.audio.echo import EchoDetector
from voiceagents.audio.formats import MULAW_8K, PCM16_16K
from voiceagents.audio.g711 import ulaw_encode

LEAD_MS = 80


def run(detector, agent, mic, *, fmt=MULAW_8K, rate=8000):
    """Agent frames sent ``LEAD_MS`` ahead of their playout, one mic frame per 20 ms; returns
    the verdict for every mic frame."""
    frame = rate // 50
    lead = LEAD_MS * rate // 1000
    encode = ulaw_encode if fmt == MULAW_8K else (lambda x: x.astype("<i2").tobytes())
    agent_bytes = encode(np.clip(agent, -32000, 32000).astype(np.int16))
    mic_bytes = encode(np.clip(mic, -32000, 32000).astype(np.int16))
    width = 1 if fmt == MULAW_8K else 2
    verdicts = []
    for index in range(len(mic) // frame):
        now = index * 0.02
        start = (index * frame + lead) * width
        detector.played(agent_bytes[start : start + frame * width], now)
        verdicts.append(
            detector.is_echo(mic_bytes[index * frame * width : (index + 1) * frame * width], now)
        )
    return np.array(verdicts)


def loud(mic, rate=8000, level=300.0):
    """Frames loud enough to matter (quiet ones are never compared: no detector would fire)."""
    frames = mic[: len(mic) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)
    return np.sqrt((frames**2).mean(axis=1)) >= level


def noise(n, seed=9, level=30.0):
    return np.random.default_rng(seed).standard_normal(n) * level


@pytest.mark.parametrize("delay_ms", [60, 120, 200, 350])
def test_an_echo_at_minus_10_db_is_found(delay_ms):
    agent = speechlike(3000, 120, seed=1)
    mic = delayed(agent, delay_ms * 8, -10) + noise(len(agent))
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, mic)
    # Every loud frame once the echo has begun (its onset frame is half silence).
    after_onset = verdicts[delay_ms // 20 + 2 :][loud(mic)[delay_ms // 20 + 2 :]]
    assert len(after_onset) > 60
    assert after_onset.mean() >= 0.97
    assert detector.echoes == verdicts.sum()


def test_the_callers_own_voice_is_not_echo():
    agent = speechlike(3000, 120, seed=1)
    caller = speechlike(3000, 190, seed=2)
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, caller + noise(len(caller)))
    assert verdicts.sum() == 0
    assert detector.checked > 30  # it did compare them (fewer once nothing matched: backoff)


def test_talking_over_the_echo_from_the_start_gets_through():
    """Double talk: frames where the caller's voice dominates are not suppressed."""
    agent = speechlike(3000, 120, seed=1)
    caller = speechlike(3000, 190, seed=2)
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, delayed(agent, 960, -10) + caller)
    assert verdicts.mean() < 0.5


#: A small room and a handset: the direct path, three reflections (5, 11 and 15 ms), a gentle
#: low-pass.
ROOM = np.convolve(
    np.array([1.0] + [0.0] * 39 + [0.5] + [0.0] * 47 + [-0.3] + [0.0] * 30 + [0.2]),
    np.ones(3) / 3,
)


@pytest.mark.parametrize("delay_ms", [60, 200])
def test_an_echo_through_a_room_is_mostly_found(delay_ms):
    """Reflections lower the correlation at any one lag: most loud frames are still found (a
    voice detector needs speech to last; scattered frames of faint echo rarely set one off)."""
    agent = speechlike(3000, 120, seed=1)
    mic = delayed(np.convolve(agent, ROOM)[: len(agent)], delay_ms * 8, -10) + noise(len(agent))
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, mic)
    assert verdicts[delay_ms // 20 + 2 :][loud(mic)[delay_ms // 20 + 2 :]].mean() >= 0.8


def test_the_caller_joining_the_echo_mostly_gets_through():
    """Echo alone for 2 s (the echo path is known), then the caller talks over it at the
    agent's level: most of their frames reach the provider, enough for any voice detector."""
    agent = speechlike(4000, 120, seed=1)
    echo = delayed(agent, 960, -10)
    caller = np.zeros(len(agent))
    caller[16000:32000] = speechlike(2000, 190, seed=2)
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, echo + caller + noise(len(agent)))
    talking = loud(caller)[100:200]
    assert verdicts[100:200][talking].mean() <= 0.4
    assert verdicts[20:100].mean() >= 0.8  # the echo before it was suppressed


def test_a_copy_louder_than_the_agent_is_a_person():
    agent = speechlike(2000, 120, seed=1, peak=3000)
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, delayed(agent, 960, +6))
    assert verdicts.sum() == 0


def test_the_same_tone_as_loud_as_the_agent_is_not_echo():
    """A test tone (or hold music) sent at the agent's own level: no echo path is that loud."""
    t = np.arange(16000) / 8000
    tone = 8000 * np.sin(2 * np.pi * 1000 * t)
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    assert run(detector, tone, tone).sum() == 0


def test_an_inverted_echo_is_found():
    agent = speechlike(2000, 120, seed=1)
    mic = -delayed(agent, 800, -10) + noise(len(agent))
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    assert run(detector, agent, mic)[8:][loud(mic)[8:]].mean() >= 0.97


def test_nothing_is_compared_without_recent_agent_audio():
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    caller = ulaw_encode(speechlike(100, 190, seed=2).astype(np.int16))
    assert not detector.is_echo(caller[:160], 0.0)
    detector.played(caller[:160], 0.0)
    detector.is_echo(caller[:160], 0.1)
    assert detector.checked == 1
    assert not detector.is_echo(caller[:160], 0.1 + detector.hold_s + 0.01)
    assert detector.checked == 1  # too long after the agent's last frame: not even compared


def test_pcm16_at_16_khz():
    agent = speechlike(2000, 120, seed=1, rate=16000)
    mic = delayed(agent, 120 * 16, -10) + noise(len(agent))
    detector = EchoDetector(PCM16_16K, PCM16_16K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, mic, fmt=PCM16_16K, rate=16000)
    assert verdicts[8:][loud(mic, 16000)[8:]].mean() >= 0.95
    caller = speechlike(2000, 190, seed=2, rate=16000)
    detector = EchoDetector(PCM16_16K, PCM16_16K, max_delay_ms=400, lead_ms=LEAD_MS)
    assert run(detector, agent, caller, fmt=PCM16_16K, rate=16000).sum() == 0


def test_searches_back_off_while_nothing_matches_and_resume_for_an_echo():
    """A caller talking over the agent: after a few fruitless searches only one frame in four
    is compared; an echo that follows is still found within a few frames."""
    agent = speechlike(4000, 120, seed=1)
    mic = speechlike(4000, 190, seed=2)
    mic[16000:] = delayed(agent, 960, -10)[16000:]  # the caller stops; the echo remains
    detector = EchoDetector(MULAW_8K, MULAW_8K, max_delay_ms=400, lead_ms=LEAD_MS)
    verdicts = run(detector, agent, mic)
    # Without backing off, every loud frame of both halves would be compared (about 190).
    assert detector.checked < 140
    assert not verdicts[:100].any()
    first = 100 + int(np.argmax(verdicts[100:]))
    assert first <= 104
    assert verdicts[first:][loud(mic)[first:]].mean() >= 0.97
