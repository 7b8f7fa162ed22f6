"""The pieces of the Telnyx media stream that need no call: codecs, byte order, frame reordering,
``client_state`` and the hang-up mapping. The stream itself is tested in
``tests/calls/test_telnyx_openai_realtime.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.carriers.telnyx import events
from telephony.carriers.telnyx.codecs import StreamCodec, l16_encoding, reported_format
from telephony.carriers.telnyx.events import ClientState, TelnyxEvent
from telephony.carriers.telnyx.reorder import Reorder
from voiceagents.audio.formats import AudioFormat, Encoding
from voiceagents.exceptions import ConfigurationError
from voiceagents.models import CallStatus

# -- codecs ---------------------------------------------------------------------------------------


def test_l16_asks_for_16_khz_both_ways_and_sets_the_inbound_codec_too():
    params = StreamCodec.named("L16").streaming_params(
        "wss://h/telephony/telnyx/media/", auth_token="tok", client_state="cs", call_id="42"
    )
    assert params == {
        "stream_url": "wss://h/telephony/telnyx/media/",
        "stream_track": "inbound_track",
        "stream_codec": "L16",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "L16",
        "stream_bidirectional_sampling_rate": 16000,
        "stream_bidirectional_target_legs": "self",
        "stream_auth_token": "tok",
        "custom_parameters": [{"name": "call_id", "value": "42"}],
        "client_state": "cs",
    }


def test_pcmu_is_8_khz_and_anything_unknown_is_the_l16_default():
    assert StreamCodec.named("pcmu") == StreamCodec("PCMU", 8000)
    assert StreamCodec.named("G722") == StreamCodec.named(None) == StreamCodec("L16", 16000)
    assert StreamCodec.named("PCMU").audio_format() == AudioFormat(Encoding.MULAW, 8000)


def test_l16_byte_order_is_a_setting_big_endian_by_default(voiceagents_settings):
    assert StreamCodec.named("L16").audio_format() == AudioFormat(Encoding.PCM16BE, 16000)
    voiceagents_settings["TELNYX_L16_BYTE_ORDER"] = "little"
    assert StreamCodec.named("L16").audio_format() == AudioFormat(Encoding.PCM16, 16000)
    voiceagents_settings["TELNYX_L16_BYTE_ORDER"] = "middle"
    with pytest.raises(ConfigurationError, match="TELNYX_L16_BYTE_ORDER"):
        l16_encoding()


@pytest.mark.parametrize(
    ("media_format", "expected"),
    [
        (
            {"encoding": "L16", "sample_rate": 16000, "channels": 1},
            AudioFormat(Encoding.PCM16BE, 16000),
        ),
        ({"encoding": "L16", "sample_rate": 8000}, AudioFormat(Encoding.PCM16BE, 8000)),
        (
            {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            AudioFormat(Encoding.MULAW, 8000),
        ),
        ({"encoding": "PCMA", "sample_rate": 8000}, AudioFormat(Encoding.ALAW, 8000)),
        ({"encoding": "OPUS", "sample_rate": 48000}, None),
        ({"encoding": "PCMU", "sample_rate": "fast"}, None),
        ({"encoding": "PCMU", "sample_rate": 8000, "channels": 2}, None),
        ("PCMU", None),
    ],
)
def test_reported_media_format(media_format, expected):
    assert reported_format(media_format, "big") == expected


# -- frame order ----------------------------------------------------------------------------------


def test_in_order_frames_go_straight_through():
    reorder = Reorder(2)
    assert [reorder.push(n, n) for n in (5, 6, 7)] == [[(5, 5)], [(6, 6)], [(7, 7)]]


def test_a_swapped_pair_is_put_back_in_order():
    reorder = Reorder(2)
    assert reorder.push(1, "a") == [(1, "a")]
    assert reorder.push(3, "c") == []
    assert reorder.push(2, "b") == [(2, "b"), (3, "c")]
    assert (reorder.held, reorder.missing, reorder.late) == (1, 0, 0)


def test_a_lost_frame_is_given_up_after_the_window_and_a_late_one_dropped():
    reorder = Reorder(2)
    reorder.push(1, 1)
    assert reorder.push(3, 3) == []
    assert reorder.push(4, 4) == []
    assert reorder.push(5, 5) == [(3, 3), (4, 4), (5, 5)]  # 2 never came
    assert reorder.push(2, 2) == []  # too late: its place has passed
    assert reorder.push(5, 5) == []  # a repeat
    assert (reorder.missing, reorder.late) == (1, 2)


def test_window_zero_skips_gaps_at_once():
    reorder = Reorder(0)
    assert reorder.push(1, 1) == [(1, 1)]
    assert reorder.push(4, 4) == [(4, 4)]
    assert reorder.push(3, 3) == []


@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=60), st.randoms())
def test_output_is_always_increasing_and_nothing_is_lost_within_the_window(numbers, rnd):
    reorder = Reorder(2)
    out = [n for number in numbers for n, _ in reorder.push(number, number)]
    assert out == sorted(set(out))
    # A sequence displaced by at most one place loses nothing.
    sequence = list(range(40))
    for i in range(0, 38, 2):
        if rnd.random() < 0.5:
            sequence[i], sequence[i + 1] = sequence[i + 1], sequence[i]
    fresh = Reorder(2)
    first = sequence[0]
    out = [n for number in sequence for n, _ in fresh.push(number, number)]
    assert out == list(range(first, 40))


# -- byte order: what a wrong one does to a tone ------------------------------------------------


def tone_purity(
    samples: np.ndarray, rate: int, freq: float, band_hz: float = 30.0
) -> tuple[float, float]:
    """``(peak frequency, share of the energy within band_hz of freq)`` of a windowed spectrum."""
    x = samples.astype(float) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    near = np.abs(freqs - freq) <= band_hz
    return float(freqs[np.argmax(spectrum)]), float(spectrum[near].sum() / spectrum.sum())


def test_a_tone_read_with_the_wrong_byte_order_keeps_its_period_but_not_its_purity():
    """Why the call tests check purity: byte-swapping keeps a tone periodic (its energy stays on
    multiples of 1 kHz, so a pitch check can be fooled) but spreads it over the harmonics."""
    t = np.arange(16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    right = np.frombuffer(tone.astype(">i2").tobytes(), dtype=">i2")
    wrong = np.frombuffer(tone.astype(">i2").tobytes(), dtype="<i2")
    peak, purity = tone_purity(right, 16000, 1000)
    assert abs(peak - 1000) < 2 and purity > 0.99
    peak, purity = tone_purity(wrong, 16000, 1000)
    assert peak % 1000 < 2 and purity < 0.5


# -- client_state and events ----------------------------------------------------------------------


def test_client_state_round_trips_and_ignores_what_is_not_ours():
    state = ClientState("0b7c", events.MODE_APOLOGY, "PCMU")
    assert ClientState.decode(state.encode()) == state
    for other in (None, "", "bm90IGpzb24=", "e30=", "!!!", "x" * 5000, 42):
        assert ClientState.decode(other) is None


def test_events_are_read_leniently():
    from tests.fakes import telnyx as fake

    event = TelnyxEvent.from_body(fake.call_hangup("v3:x", occurred_at="2026-01-01T00:00:05.5Z"))
    assert event.event_type == "call.hangup" and event.call_control_id == "v3:x"
    assert event.occurred_at.isoformat() == "2026-01-01T00:00:05.500000+00:00"
    assert event.get("no_such_field") == "" and event.get("client_state") == ""
    for body in (b"[]", b"{}", b'{"data": {"id": 1, "event_type": "x"}}', b"not json"):
        with pytest.raises(events.MalformedEvent):
            TelnyxEvent.from_body(body)


@pytest.mark.parametrize(
    ("cause", "source", "direction", "reason"),
    [
        ("normal_clearing", "caller", "inbound", "caller_hangup"),
        ("normal_clearing", "callee", "inbound", "agent_hangup"),
        ("normal_clearing", "caller", "outbound", "agent_hangup"),
        ("normal_clearing", "callee", "outbound", "callee_hangup"),
        ("normal_clearing", "unknown", "inbound", "hangup"),
        ("originator_cancel", "caller", "inbound", "caller_cancelled"),
        ("time_limit", "unknown", "inbound", "time_limit"),
        ("user_busy", "callee", "outbound", "busy"),
        ("something_new", "caller", "inbound", "other"),
    ],
)
def test_hangup_causes_map_to_end_reasons(cause, source, direction, reason):
    assert events.end_reason(cause, source, direction) == reason


def test_hangup_status_depends_on_whether_the_call_was_answered():
    assert events.final_status("user_busy", answered=True) == CallStatus.COMPLETED
    assert events.final_status("user_busy", answered=False) == CallStatus.BUSY
    assert events.final_status("originator_cancel", answered=False) == CallStatus.CANCELED
    assert events.final_status("timeout", answered=False) == CallStatus.NO_ANSWER
    assert events.final_status("not_found", answered=False) == CallStatus.FAILED
