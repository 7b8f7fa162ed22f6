"""Test signals and measurements shared by the audio tests (no dependency beyond numpy)."""

from __future__ import annotations

import numpy as np

#: Every rate a carrier or provider sends or accepts (docs/audio.md#wire-formats).
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
RATE_PAIRS = tuple((a, b) for a in RATES for b in RATES if a != b)


def tone(freq: float, rate: int, seconds: float, amplitude: float = 16000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def fit_tone(x: np.ndarray, freq: float, rate: int) -> tuple[float, np.ndarray]:
    """Least-squares amplitude of a sinusoid at ``freq`` in ``x``, and the residual."""
    t = np.arange(x.size) / rate
    basis = np.column_stack((np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)))
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef)), x - basis @ coef


def db(ratio: float) -> float:
    return 20 * np.log10(max(ratio, 1e-12))


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x)))


def peak_frequency(x: np.ndarray, rate: int) -> float:
    """Frequency of the strongest component, with parabolic interpolation between bins."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / x.size


def voiced(rate: int, seconds: float, f0: float = 140.0, amplitude: float = 12000.0) -> np.ndarray:
    """A crude vowel: harmonics of ``f0`` with a slight vibrato and 4 Hz syllable envelope."""
    t = np.arange(round(rate * seconds)) / rate
    phase = 2 * np.pi * f0 * (t + 0.05 / (2 * np.pi * 3) * (1 - np.cos(2 * np.pi * 3 * t)))
    x = sum(np.sin(k * phase) / k for k in range(1, 30) if f0 * k < min(3800, rate / 2))
    x *= 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return np.rint(x / np.abs(x).max() * amplitude).astype(np.int16)


def random_splits(data, cuts: list[int]):
    """Split a sequence at the given (unsorted, possibly repeated) offsets."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
