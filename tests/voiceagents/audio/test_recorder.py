import struct
import tracemalloc
import wave

import numpy as np
import pytest

from voiceagents.audio import (
    MULAW_8K,
    PCM16_16K,
    CallRecorder,
    Pacer,
    repair_wav,
    ulaw_decode,
    ulaw_encode,
)

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
