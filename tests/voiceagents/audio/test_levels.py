"""The level strip's numbers: each channel's loudness over stretches of a stereo recording."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from tests.voiceagents.factories import wav_bytes
from voiceagents.audio import levels
from voiceagents.audio.levels import channel_levels

RATE = 8000


def stereo_wav(caller: np.ndarray, agent: np.ndarray) -> io.BytesIO:
    frames = np.stack([caller, agent], axis=1).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(frames.tobytes())
    buffer.seek(0)
    return buffer


def tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * 440 * t))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


@pytest.fixture
def two_seconds():
    """The caller speaks loudly in the first second, the agent quietly in the second."""
    caller = np.concatenate([tone(1, 0.5), silence(1)])
    agent = np.concatenate([silence(1), tone(1, 0.01)])
    return stereo_wav(caller, agent)


def test_each_channel_is_loud_where_its_speaker_speaks(two_seconds):
    result = channel_levels(two_seconds, bars=4)

    assert result.duration_s == 2.0
    # A sine of half scale is about -9 dBFS RMS, one of 1 % about -43 dBFS, on a -60..0 scale.
    assert result.caller == pytest.approx([0.85, 0.85, 0.0, 0.0], abs=0.01)
    assert result.agent == pytest.approx([0.0, 0.0, 0.283, 0.283], abs=0.01)


def test_reading_in_small_pieces_gives_the_same_levels(two_seconds, monkeypatch):
    whole = channel_levels(two_seconds, bars=7)
    two_seconds.seek(0)
    monkeypatch.setattr(levels, "_READ_FRAMES", 37)

    assert channel_levels(two_seconds, bars=7) == whole
    assert len(whole.caller) == 7


def test_a_recording_shorter_than_the_bars_gets_one_bar_per_frame():
    result = channel_levels(stereo_wav(tone(3 / RATE, 0.5), silence(3 / RATE)), bars=240)

    assert len(result.caller) == len(result.agent) == 3


def test_an_empty_recording_has_no_bars():
    result = channel_levels(stereo_wav(silence(0), silence(0)))

    assert (result.duration_s, result.caller, result.agent) == (0.0, [], [])


def test_a_mono_recording_is_refused_with_what_was_found():
    with pytest.raises(ValueError, match="expected 2 channels of 16-bit PCM, found 1 channel"):
        channel_levels(io.BytesIO(wav_bytes(channels=1)))


def test_a_file_that_is_not_a_wav_is_refused():
    with pytest.raises(ValueError, match="not a readable WAV file"):
        channel_levels(io.BytesIO(b"RIFF but not really"))
