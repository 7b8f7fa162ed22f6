import struct
import tracemalloc
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceagents.audio import (
    ALAW_8K,
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    CallRecorder,
    Converter,
    Pacer,
    g711,
    repair_wav,
    ulaw_decode,
    ulaw_encode,
)
from voiceagents.audio import recorder as recorder_module

from .signals import peak_frequency, tone

RATE = 8000


def read_wav(path):
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return w.getframerate(), frames


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def test_simulated_60_s_call_with_barge_in(tmp_path):
    """Caller frames every 20 ms, two paced agent replies, a barge-in during the second."""
    rng = np.random.default_rng(7)
    caller = (tone(440, RATE, 60.0, 6000) + rng.normal(0, 300, RATE * 60)).astype(np.int16)
    reply_1 = ulaw_encode(tone(1000, RATE, 5.0, 9000))
    reply_2 = ulaw_encode(tone(1300, RATE, 20.0, 9000))
    recorder = CallRecorder(tmp_path / "call.wav", sample_rate=RATE, agent_format=MULAW_8K)
    pacer = Pacer(MULAW_8K, lead_ms=80)
    barge_in_s, played_1, played_2 = 30.0, [], []
    for step in range(3000):
        now = step * 0.02
        if step == 100:  # t=2 s: the provider bursts a whole 5 s reply at once
            pacer.push(reply_1)
            pacer.end_segment("reply-1")
            target = played_1
        if step == 1250:  # t=25 s: the second reply, cut off by the caller at t=30 s
            pacer.push(reply_2)
            target = played_2
        if now == barge_in_s:
            pacer.clear(now)
            recorder.clear_agent(now * 1000)
        for frame in pacer.pull(now):
            if frame.data:
                recorder.write_agent(frame.data, at_ms=frame.play_at * 1000)
                target.append(frame)
        # The caller's frame for [now, now + 20 ms) arrives a little after it was spoken.
        recorder.write_caller(caller[step * 160 : (step + 1) * 160].tobytes(), at_ms=now * 1000)
    info = recorder.close(duration_ms=60_000)

    rate, frames = read_wav(tmp_path / "call.wav")
    assert rate == RATE and info.frames == len(frames)
    assert abs(len(frames) / RATE - 60.0) <= 0.02
    left, right = frames[:, 0], frames[:, 1]
    assert correlation(left, caller) > 0.999
    assert info.late_ms == 0

    second = lambda s: int(s * RATE)  # noqa: E731
    agent_1 = right[second(2.0) : second(7.0)]
    assert correlation(agent_1, ulaw_decode(reply_1)) > 0.999
    assert peak_frequency(agent_1, RATE) == pytest.approx(1000, abs=1)
    assert not right[second(7.0) : second(25.0)].any()
    heard_2 = right[second(25.0) : second(barge_in_s)]
    assert correlation(heard_2, ulaw_decode(reply_2)[: len(heard_2)]) > 0.999
    # The 80 ms lead already sent to the carrier was dropped by the clear: not recorded.
    assert not right[second(barge_in_s) :].any()
    assert sum(len(f.data) for f in played_2) > (barge_in_s - 25.0) * RATE


def test_gaps_are_silence_and_untimed_chunks_continue_their_channel(tmp_path):
    recorder = CallRecorder(tmp_path / "gaps.wav", sample_rate=RATE)
    one = tone(500, RATE, 1.0, 5000).tobytes()
    recorder.write_caller(one, at_ms=0)
    recorder.write_agent(one, at_ms=1000)
    recorder.write_caller(one, at_ms=3000)
    recorder.write_caller(one)  # continues at 4 s
    info = recorder.close()
    _, frames = read_wav(tmp_path / "gaps.wav")
    assert info.frames == 5 * RATE and info.duration_ms == 5000
    left, right = frames[:, 0], frames[:, 1]
    expected = np.frombuffer(one, dtype="<i2")
    np.testing.assert_array_equal(left[:RATE], expected)
    assert not left[RATE : 3 * RATE].any()
    np.testing.assert_array_equal(left[4 * RATE :], expected)
    np.testing.assert_array_equal(right[RATE : 2 * RATE], expected)
    assert not right[:RATE].any() and not right[2 * RATE :].any()


def test_audio_for_time_already_on_disk_is_dropped_and_counted(tmp_path):
    recorder = CallRecorder(
        tmp_path / "late.wav", sample_rate=RATE, holdback_ms=500, flush_bytes=4000
    )
    recorder.write_caller(bytes(2 * RATE * 10), at_ms=0)
    recorder.write_agent(tone(800, RATE, 1.0).tobytes(), at_ms=0)
    info = recorder.close()
    assert info.late_ms == 1000
    assert info.frames == 10 * RATE


def test_other_input_formats_are_converted_to_the_recording_rate(tmp_path):
    recorder = CallRecorder(tmp_path / "mixed.wav", sample_rate=RATE, caller_format=PCM16_16K)
    recorder.write_caller(tone(1000, 16000, 1.0).tobytes(), at_ms=0)
    info = recorder.close()
    _, frames = read_wav(tmp_path / "mixed.wav")
    assert info.frames == RATE
    assert peak_frequency(frames[100:, 0], RATE) == pytest.approx(1000, abs=1)


def test_close_can_cut_to_the_call_length_and_is_idempotent(tmp_path):
    recorder = CallRecorder(tmp_path / "cut.wav", sample_rate=RATE, flush_bytes=8000)
    recorder.write_caller(bytes(2 * RATE * 5))
    assert recorder.close(duration_ms=2500).frames == 2.5 * RATE
    assert recorder.close().frames == 2.5 * RATE
    assert read_wav(tmp_path / "cut.wav")[1].shape == (2.5 * RATE, 2)
    with pytest.raises(ValueError):
        recorder.write_caller(b"\x00\x00")


def test_header_is_valid_after_close(tmp_path):
    path = tmp_path / "h.wav"
    with CallRecorder(path, sample_rate=16000) as recorder:
        recorder.write_caller(bytes(640 * 50))
    data = path.read_bytes()
    riff, fmt, data_size = struct.unpack_from("<4sI", data, 0), data[12:16], data[40:44]
    assert riff == (b"RIFF", len(data) - 8) and fmt == b"fmt "
    assert struct.unpack("<I", data_size)[0] == len(data) - 44 == 16000 * 4


def test_memory_stays_bounded_over_a_long_call(tmp_path):
    """Ten minutes at 16 kHz in 20 ms chunks: the recorder never holds more than 1 MB."""
    rate, limit = 16000, 1024 * 1024
    frame = tone(300, rate, 0.02, 3000).tobytes()
    tracemalloc.start()
    try:
        recorder = CallRecorder(tmp_path / "long.wav", sample_rate=rate, max_buffer_bytes=limit)
        for step in range(30_000):
            recorder.write_caller(frame, at_ms=step * 20)
            recorder.write_agent(frame, at_ms=step * 20 + 5)
            if step % 3000 == 0:
                assert recorder.buffered_bytes <= limit
        info = recorder.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit
    assert info.duration_ms == pytest.approx(600_000 + 5, abs=1)


def test_a_jump_far_ahead_writes_silence_in_bounded_blocks(tmp_path):
    recorder = CallRecorder(tmp_path / "jump.wav", sample_rate=RATE)
    recorder.write_caller(tone(400, RATE, 0.1).tobytes(), at_ms=0)
    recorder.write_caller(tone(400, RATE, 0.1).tobytes(), at_ms=120_000)
    info = recorder.close()
    _, frames = read_wav(tmp_path / "jump.wav")
    assert info.frames == 120.1 * RATE
    assert not frames[RATE : 119 * RATE].any()


def write_unfinished(path, seconds: float) -> None:
    """A recorder that never gets to close(): the process died mid-call."""
    recorder = CallRecorder(path, sample_rate=RATE, flush_bytes=16000)
    chunk = tone(600, RATE, 0.02, 7000).tobytes()
    for step in range(int(seconds * 50)):
        recorder.write_caller(chunk, at_ms=step * 20)
    recorder._file.flush()  # what the OS has of the file when the process dies


def test_a_new_recording_is_a_valid_wav_on_disk_at_once(tmp_path):
    path = tmp_path / "new.wav"
    recorder = CallRecorder(path, sample_rate=RATE)
    rate, frames = read_wav(path)  # a kill -9 now leaves an empty recording, not a broken one
    assert (rate, len(frames)) == (RATE, 0)
    recorder.close()


def test_audio_is_on_disk_within_a_second_and_a_quarter_of_arriving(tmp_path):
    """No close() and no flush by the test: what the file holds is what a kill -9 would leave."""
    path = tmp_path / "live.wav"
    recorder = CallRecorder(path, sample_rate=RATE)  # the defaults a call uses
    chunk = tone(600, RATE, 0.02, 7000).tobytes()
    for step in range(5 * 50):  # 5 s of 20 ms frames
        recorder.write_caller(chunk, at_ms=step * 20)
        on_disk_ms = (path.stat().st_size - 44) / 4 / RATE * 1000
        assert (step + 1) * 20 - on_disk_ms <= 1250, step
    rate, frames = read_wav(path)  # the header is kept up to date too
    assert rate == RATE and len(frames) >= 3.75 * RATE
    assert peak_frequency(frames[:, 0], RATE) == pytest.approx(600, abs=2)


@pytest.mark.parametrize("cut", [0, 1, 3, 1001])
def test_a_file_cut_off_mid_write_is_repaired_and_readable(tmp_path, cut):
    path = tmp_path / "crash.wav"
    write_unfinished(path, 3.0)
    size = path.stat().st_size
    with open(path, "r+b") as f:  # cut mid-frame, past what the header last recorded
        f.truncate(size - cut)
    frames = repair_wav(path)
    rate, data = read_wav(path)
    assert rate == RATE and len(data) == frames == (size - cut - 44) // 4
    assert peak_frequency(data[:, 0], RATE) == pytest.approx(600, abs=2)


def test_repair_fixes_a_header_that_was_never_updated(tmp_path):
    path = tmp_path / "fresh.wav"
    write_unfinished(path, 1.0)
    raw = bytearray(path.read_bytes())
    raw[4:8] = raw[40:44] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(raw) + b"\x01\x02\x03\x04\x05\x06")
    assert repair_wav(path) == (len(raw) + 6 - 44) // 4
    assert len(read_wav(path)[1]) == (len(raw) + 4 - 44) // 4


def test_repair_refuses_files_that_are_not_wav(tmp_path):
    path = tmp_path / "junk.wav"
    path.write_bytes(b"not a wav file at all, just text" * 3)
    with pytest.raises(ValueError):
        repair_wav(path)


def test_repair_copes_with_a_finished_file(tmp_path):
    path = tmp_path / "ok.wav"
    with CallRecorder(path, sample_rate=RATE) as recorder:
        recorder.write_agent(bytes(320 * 10))
    before = path.read_bytes()
    assert repair_wav(path) == 1600
    assert path.read_bytes() == before


FORMATS = [MULAW_8K, ALAW_8K, PCM16_8K, PCM16_16K]


class Reference:
    """What a recording must hold, computed the plain way: each channel decoded and placed in a
    full-length array as it comes, with the recorder's rules for what is final (written, so
    later audio for that time is late) applied to positions only."""

    def __init__(self, formats, holdback_ms, flush_bytes, max_buffer_bytes, length):
        self.holdback = RATE * holdback_ms // 1000
        self.flush_frames = max(1, flush_bytes // 4)
        self.capacity = min(max_buffer_bytes // 4, self.holdback + self.flush_frames + RATE)
        self.formats = formats
        self.converters = [Converter(fmt, PCM16_8K) for fmt in formats]
        self.audio = np.zeros((length, 2), dtype=np.int16)
        self.ends = [0, 0]
        self.base = self.final = self.high = self.late = 0

    def decode(self, channel, data):
        fmt = self.formats[channel]
        if fmt == MULAW_8K:
            return g711.ulaw_decode(data)
        if fmt == ALAW_8K:
            return g711.alaw_decode(data)
        return np.frombuffer(self.converters[channel].convert(data), dtype="<i2")

    def finalise(self, upto):
        self.final = max(self.final, upto)
        self.base = upto

    def write(self, channel, data, at_ms):
        samples = self.decode(channel, data)
        start = self.ends[channel] if at_ms is None else round(at_ms * RATE / 1000)
        self.ends[channel] = start + len(samples)
        skip = min(len(samples), max(0, self.final - start))
        self.late += skip
        samples, start = samples[skip:], start + skip
        # Audio more than the buffer's capacity past the last write to disk forces one.
        for offset in range(0, len(samples), self.capacity):
            piece = samples[offset : offset + self.capacity]
            at, end = start + offset, start + offset + len(piece)
            if end - self.base > self.capacity:
                self.finalise(max(self.final, end - self.capacity))
            self.audio[at:end, channel] = piece
            self.high = max(self.high, end)
            self.final = max(self.final, self.high - self.holdback)
            if self.final - self.base >= self.flush_frames:
                self.finalise(self.final)

    def clear_agent(self, at_ms):
        cut = max(round(at_ms * RATE / 1000), self.final)
        self.audio[cut:, 1] = 0
        self.ends[1] = min(self.ends[1], cut)
        self.converters[1].reset()

    def close(self, duration_ms):
        end = self.high if duration_ms is None else round(duration_ms * RATE / 1000)
        return self.audio[:end]


times = st.one_of(
    st.none(),
    st.integers(-20, 2000),
    st.integers(-320, 32000).map(lambda sixteenths: sixteenths / 16),  # ties for round()
    st.floats(-20, 2000),
)
writes = st.tuples(
    st.sampled_from(["caller", "agent"]),
    st.one_of(st.just(160), st.integers(0, 400), st.integers(0, 3000)),  # samples in
    times,
    st.integers(0, 2**32 - 1),  # seed for the content
)
clears = st.tuples(st.just("clear"), st.floats(-20, 2000))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    formats=st.tuples(st.sampled_from(FORMATS), st.sampled_from(FORMATS)),
    holdback_ms=st.sampled_from([0, 2, 30, 100]),
    flush_bytes=st.sampled_from([4, 64, 1000, 8000]),
    slack=st.integers(1, 2000),
    actions=st.lists(st.one_of(writes, writes, writes, clears), max_size=40),
    duration_ms=st.one_of(st.none(), st.floats(0, 2500)),
)
def test_recording_matches_a_plain_reference(
    tmp_path, formats, holdback_ms, flush_bytes, slack, actions, duration_ms
):
    """Timed and untimed chunks, gaps, late audio, clears, long chunks and jumps past the
    buffer, close with or without a length: the file holds what the reference computes."""
    holdback = RATE * holdback_ms // 1000
    max_buffer_bytes = 4 * (holdback + max(1, flush_bytes // 4) + slack)
    path = tmp_path / "property.wav"
    recorder = CallRecorder(
        path,
        sample_rate=RATE,
        caller_format=formats[0],
        agent_format=formats[1],
        holdback_ms=holdback_ms,
        flush_bytes=flush_bytes,
        max_buffer_bytes=max_buffer_bytes,
    )
    reference = Reference(formats, holdback_ms, flush_bytes, max_buffer_bytes, 3 * 16000)
    for action in actions:
        if action[0] == "clear":
            recorder.clear_agent(action[1])
            reference.clear_agent(action[1])
            continue
        who, count, at_ms, seed = action
        channel = 0 if who == "caller" else 1
        fmt = formats[channel]
        data = np.random.default_rng(seed).bytes(count * fmt.frame_width)
        getattr(recorder, f"write_{who}")(data, at_ms)
        reference.write(channel, data, at_ms)
        assert recorder.buffered_bytes <= max_buffer_bytes
    info = recorder.close(duration_ms)

    expected = reference.close(duration_ms)
    rate, frames = read_wav(path)
    assert rate == RATE and info.frames == len(frames) == len(expected)
    assert info.late_ms == reference.late * 1000 / RATE
    assert recorder.written_ms == info.duration_ms
    np.testing.assert_array_equal(frames, expected)


def test_g711_silence_decodes_to_zero_next_to_codes_that_decode_to_zero(tmp_path):
    """µ-law has two codes for 0 and A-law none: gaps are 0 either way, audio is kept."""
    ulaw_zeros, alaw_small = bytes([0x7F, 0xFF] * 80), bytes([0xD5, 0x55] * 80)
    recorder = CallRecorder(
        tmp_path / "g711.wav", sample_rate=RATE, caller_format=MULAW_8K, agent_format=ALAW_8K
    )
    recorder.write_caller(ulaw_zeros, at_ms=20)
    recorder.write_agent(alaw_small, at_ms=40)
    recorder.clear_agent(50)
    recorder.close(duration_ms=100)
    _, frames = read_wav(tmp_path / "g711.wav")
    assert not frames[:, 0].any()
    assert not frames[:320, 1].any() and not frames[400:, 1].any()
    np.testing.assert_array_equal(frames[320:400, 1], [8, -8] * 40)


def test_pcm16_with_an_odd_byte_count_is_refused_before_anything_changes(tmp_path):
    recorder = CallRecorder(tmp_path / "odd.wav", sample_rate=RATE)
    recorder.write_caller(bytes(320))
    with pytest.raises(ValueError, match="odd byte count"):
        recorder.write_caller(bytes(3))
    recorder.write_caller(tone(500, RATE, 0.02).tobytes())  # continues where the first ended
    assert recorder.close().frames == 320
    np.testing.assert_array_equal(read_wav(tmp_path / "odd.wav")[1][160:, 0], tone(500, RATE, 0.02))


def test_the_wav_size_limit_cuts_on_a_whole_frame(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(recorder_module, "_MAX_DATA", 4 * 1000 + 3)
    recorder = CallRecorder(tmp_path / "full.wav", sample_rate=RATE, caller_format=MULAW_8K)
    caller = tone(700, RATE, 1.0, 5000)
    recorder.write_caller(ulaw_encode(caller), at_ms=0)
    with caplog.at_level("WARNING", logger=recorder_module.__name__):
        info = recorder.close(duration_ms=2000)
    assert info.frames == 1000 and "size limit" in caplog.text
    _, frames = read_wav(tmp_path / "full.wav")
    np.testing.assert_array_equal(frames[:, 0], ulaw_decode(ulaw_encode(caller))[:1000])
