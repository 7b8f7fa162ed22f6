"""Speech-like test signals for the echo detector (numpy only)."""

from __future__ import annotations

import numpy as np


def speechlike(ms: int, f0: float, seed: int, rate: int = 8000, peak: float = 12000.0):
    """Voiced, syllable-modulated, wandering pitch: correlates with itself like speech (only
    near lag 0), unlike a pure tone that matches itself at every period."""
    rng = np.random.default_rng(seed)
    n = ms * rate // 1000
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    signal = sum(
        np.sin(k * phase + rng.random() * 6)
        * (1 + np.sin(2 * np.pi * (3 + k * 0.37) * t + rng.random() * 6))
        / k
        for k in range(1, 15)
    )
    signal = signal * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.random() * 6))
    signal = signal + 0.05 * rng.standard_normal(n)
    return signal / np.abs(signal).max() * peak


def delayed(signal: np.ndarray, delay_samples: int, gain_db: float) -> np.ndarray:
    out = np.zeros_like(signal)
    out[delay_samples:] = signal[: len(signal) - delay_samples] * 10 ** (gain_db / 20)
    return out
