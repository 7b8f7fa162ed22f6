"""Measured (not timed) properties of the resampler, for every rate pair the legs use."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagents.audio import Resampler, filter_delay_ms

from .signals import RATE_PAIRS, db, fit_tone, peak_frequency, random_splits, rms, tone

pair_ids = [f"{a}-{b}" for a, b in RATE_PAIRS]
SETTLE_S = 0.02  # skip the filter's start-up transient before measuring


def steady(x: np.ndarray, rate: int) -> np.ndarray:
    return x[int(SETTLE_S * rate) : x.size - int(SETTLE_S * rate)]


def run_in_chunks(resampler: Resampler, x: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([resampler.process(x[i : i + chunk]) for i in range(0, x.size, chunk)])


def stopband_tones(src: int, dst: int) -> list[float]:
    """Input frequencies above the output's Nyquist that must not fold back.

    At 8 kHz output that starts at 4.6 kHz (whatever folds lands above 3.4 kHz, outside the
    phone band); at higher rates right at the output's Nyquist frequency.
    """
    low = 4600.0 if dst == 8000 else dst / 2
    high = 0.97 * src / 2
    tones = {*np.linspace(low, high, 6).round(1), 1.25 * dst / 2} - {dst / 2}
    return sorted(f for f in tones if f <= high)


@pytest.mark.parametrize(("src", "dst"), [p for p in RATE_PAIRS if p[0] > p[1]])
def test_alias_rejection_is_at_least_60_db(src, dst):
    for freq in stopband_tones(src, dst):
        out = Resampler(src, dst).process(tone(freq, src, 0.3))
        rejection = db(rms(steady(out, dst)) / (16000 / math.sqrt(2)))
        assert rejection <= -60, f"{freq} Hz leaks at {rejection:.1f} dB"


def test_five_khz_from_24k_to_8k_is_gone():
    out = Resampler(24000, 8000).process(tone(5000, 24000, 0.5))
    assert db(rms(steady(out, 8000)) / (16000 / math.sqrt(2))) <= -60


@pytest.mark.parametrize(("src", "dst"), [p for p in RATE_PAIRS if p[0] < p[1]])
def test_images_of_upsampling_are_at_least_60_db_down(src, dst):
    for freq in (300.0, 1000.0, 0.85 * src / 2):
        out = steady(Resampler(src, dst).process(tone(freq, src, 0.3)), dst)
        amplitude, residual = fit_tone(out, freq, dst)
        assert db(rms(residual) / (amplitude / math.sqrt(2))) <= -60, f"{freq} Hz"


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS, ids=pair_ids)
def test_passband_is_flat_within_1_db(src, dst):
    edge = 0.85 * min(src, dst) / 2
    for freq in sorted({300.0, 1000.0, 2000.0, 3000.0, 3400.0, edge}):
        out = steady(Resampler(src, dst).process(tone(freq, src, 0.2)), dst)
        amplitude, _ = fit_tone(out, freq, dst)
        assert abs(db(amplitude / 16000)) <= 1.0, f"{freq} Hz at {db(amplitude / 16000):.2f} dB"


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS, ids=pair_ids)
def test_impulse_latency_is_at_most_5_ms(src, dst):
    x = np.zeros(src // 5, dtype=np.int16)
    at = src // 10
    x[at] = 30000
    resampler = Resampler(src, dst)
    out = run_in_chunks(resampler, x, src // 50)
    latency_ms = (np.argmax(np.abs(out)) / dst - at / src) * 1000
    assert 0 <= latency_ms <= 5
    assert latency_ms == pytest.approx(resampler.latency_ms, abs=1000 / min(src, dst))
    assert filter_delay_ms(src, dst) == resampler.latency_ms


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS, ids=pair_ids)
def test_a_1_khz_tone_keeps_its_frequency(src, dst):
    out = Resampler(src, dst).process(tone(1000, src, 1.0))
    assert peak_frequency(steady(out, dst), dst) == pytest.approx(1000, abs=0.5)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(RATE_PAIRS),
    st.lists(st.integers(0, 4000), max_size=25),
    st.integers(0, 2**32 - 1),
)
def test_any_split_of_the_input_gives_identical_output(pair, cuts, seed):
    src, dst = pair
    x = np.random.default_rng(seed).integers(-32768, 32768, 4000).astype(np.int16)
    whole = Resampler(src, dst).process(x)
    resampler = Resampler(src, dst)
    pieces, fed, emitted = [], 0, 0
    for part in random_splits(x, cuts):
        out = resampler.process(part)
        pieces.append(out)
        fed += part.size
        emitted += out.size
        # Nothing is held back: every output sample whose input has arrived comes out.
        assert emitted == -(-fed * dst // src)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_equal_rates_pass_samples_through():
    x = np.arange(10, dtype=np.int16)
    resampler = Resampler(16000, 16000)
    assert resampler.process(x) is x
    assert resampler.latency_ms == 0 and resampler.flush().size == 0


def test_flush_emits_the_delayed_tail_and_resets():
    resampler = Resampler(8000, 24000)
    x = tone(1000, 8000, 0.1)
    body = resampler.process(x)
    tail = resampler.flush()
    assert tail.size >= round(resampler.latency_ms * 24)
    assert np.abs(tail[:10]).max() > 1000
    again = resampler.process(x)
    np.testing.assert_array_equal(again, body)


def test_full_scale_input_saturates_instead_of_wrapping():
    x = np.tile(np.array([32767, 32767, -32768, -32768], dtype=np.int16), 2000)
    out = Resampler(8000, 48000).process(x)
    assert out.max() == 32767 and out.min() == -32768
    assert np.all(np.diff(out[100:].astype(np.int32)) != 65535)


def test_unreasonable_ratios_are_refused():
    with pytest.raises(ValueError):
        Resampler(8000, 44101)
    with pytest.raises(ValueError):
        Resampler(0, 8000)
