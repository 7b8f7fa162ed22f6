"""How loud each side of a recorded call is over time: the level strip of the call page.

A recording is a stereo PCM16 WAV, caller left and agent right (``recorder``). It is cut into
``bars`` equal stretches; each gets the RMS level of each channel, mapped from ``FLOOR_DB`` dBFS
(nothing to see) to 0 dBFS (full height). The file is read a stretch at a time, so memory stays
small whatever the call length; the time is one pass over the file.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass

import numpy as np

__all__ = ["FLOOR_DB", "ChannelLevels", "channel_levels"]

#: Levels at or below this many dBFS count as silence (line noise on a phone call sits lower).
FLOOR_DB = -60.0
#: Frames read at once within one stretch, so that a long stretch needs little memory.
_READ_FRAMES = 1 << 16


@dataclass(frozen=True)
class ChannelLevels:
    """Levels from 0 (silence) to 1 (full scale), one per stretch of ``duration_s / len``."""

    duration_s: float
    caller: list[float]
    agent: list[float]


def channel_levels(fileobj, bars: int = 240) -> ChannelLevels:
    """The level of both channels of the stereo WAV in ``fileobj`` (binary, at its start).

    Raises ``ValueError`` for anything but a 2-channel 16-bit PCM WAV.
    """
    try:
        wav = wave.open(fileobj, "rb")
    except (wave.Error, EOFError) as err:
        raise ValueError(f"not a readable WAV file: {err}") from err
    with wav:
        if wav.getnchannels() != 2 or wav.getsampwidth() != 2:
            raise ValueError(
                f"expected 2 channels of 16-bit PCM, found {wav.getnchannels()} channel(s) of "
                f"{8 * wav.getsampwidth()}-bit audio"
            )
        frames, rate = wav.getnframes(), wav.getframerate()
        per_bar = max(math.ceil(frames / bars), 1) if frames else 0
        caller: list[float] = []
        agent: list[float] = []
        while per_bar and len(caller) < bars:
            sums, count = _square_sums(wav, per_bar)
            if not count:
                break
            caller.append(_level(sums[0], count))
            agent.append(_level(sums[1], count))
    return ChannelLevels(frames / rate if rate else 0.0, caller, agent)


def _square_sums(wav: wave.Wave_read, frames: int) -> tuple[np.ndarray, int]:
    """The sums of squared samples of each channel over the next ``frames`` frames (fewer at
    the end of the file), and how many frames were read."""
    sums = np.zeros(2)
    count = 0
    while count < frames:
        data = wav.readframes(min(_READ_FRAMES, frames - count))
        if len(data) < 4:
            break
        samples = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i2").reshape(-1, 2)
        sums += np.square(samples, dtype=np.float64).sum(axis=0)
        count += len(samples)
    return sums, count


def _level(square_sum: float, count: int) -> float:
    rms = math.sqrt(square_sum / count) / 32768.0
    if rms <= 0:
        return 0.0
    db = 20 * math.log10(rms)
    return round(min(max((db - FLOOR_DB) / -FLOOR_DB, 0.0), 1.0), 3)
