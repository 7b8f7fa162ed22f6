"""Audio core benchmark: microseconds per 20 ms frame for every transform.

Run from the repository root with ``python -m bench.audio`` (``make bench`` does). Each row is the
best and the median of several repetitions of a tight loop over one 20 ms frame; the "core %"
column is the share of one CPU core that transform takes for one direction of one call (a frame
every 20 ms). ``--all-pairs`` adds every resampler rate pair, ``--compare-soxr`` measures soxr's
streaming modes the way the resampler's module docstring reports them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from voiceagents.audio import (
    MULAW_8K,
    PCM16_16K,
    PCM16_24K,
    AudioFormat,
    CallRecorder,
    Converter,
    EnergyDetector,
    Pacer,
    Resampler,
    SampleCarry,
    alaw_decode,
    alaw_encode,
    as_samples,
    ulaw_decode,
    ulaw_encode,
)
from voiceagents.audio.catchup import Splicer

FRAME_US = 20_000.0
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
TELEPHONY_PAIRS = [
    (24000, 8000),
    (8000, 24000),
    (16000, 8000),
    (8000, 16000),
    (22050, 8000),
    (44100, 8000),
    (48000, 8000),
    (8000, 48000),
]


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = ""
    try:
        config = np.show_config(mode="dicts")
        info = config["Build Dependencies"]["blas"]
        blas = f", BLAS {info.get('name')} {info.get('version')}"
    except Exception:  # noqa: BLE001 - only decoration for the report
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}{blas}"
    )


def measure(
    fn: Callable[[], object], *, number: int = 2000, repeat: int = 7
) -> tuple[float, float]:
    """(best, median) microseconds per call of ``fn``."""
    for _ in range(min(200, number)):
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter_ns() - start) / number / 1000)
    return min(runs), statistics.median(runs)


def tone(rate: int, ms: float = 20, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * ms / 1000)) / rate
    return np.rint(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def codec_rows():
    pcm = tone(8000)
    ulaw, alaw = ulaw_encode(pcm), alaw_encode(pcm)
    passthrough = Converter(MULAW_8K, MULAW_8K)
    carry, pcm_bytes = SampleCarry(), pcm.tobytes()
    yield "pass-through Converter (µ-law 8k)", lambda: passthrough.convert(ulaw)
    yield "µ-law decode (160 B -> int16)", lambda: ulaw_decode(ulaw)
    yield "µ-law encode (int16 -> 160 B)", lambda: ulaw_encode(pcm)
    yield "A-law decode", lambda: alaw_decode(alaw)
    yield "A-law encode", lambda: alaw_encode(pcm)
    yield "PCM16 bytes -> int16 view", lambda: as_samples(pcm_bytes)
    yield "PCM16 SampleCarry.feed", lambda: carry.feed(pcm_bytes)


def resample_rows(pairs):
    for src, dst in pairs:
        resampler, frame = Resampler(src, dst), tone(src)
        yield (
            f"resample {src} -> {dst} ({resampler.latency_ms:.2f} ms delay)",
            (lambda r=resampler, x=frame: r.process(x)),
        )


def converter_rows():
    paths = [
        (PCM16_24K, MULAW_8K, "OpenAI pcm 24k -> Twilio µ-law"),
        (MULAW_8K, PCM16_24K, "Twilio µ-law -> OpenAI pcm 24k"),
        (PCM16_16K, MULAW_8K, "L16 16k -> µ-law 8k"),
        (MULAW_8K, PCM16_16K, "µ-law 8k -> L16 16k"),
        (AudioFormat("pcm16", 22050), MULAW_8K, "ElevenLabs pcm 22.05k -> µ-law"),
    ]
    for src, dst, label in paths:
        converter = Converter(src, dst)
        chunk = Converter(AudioFormat("pcm16", src.sample_rate), src).convert(
            tone(src.sample_rate).tobytes()
        )
        yield f"Converter: {label}", lambda c=converter, x=chunk: c.convert(x)


def pipeline_rows(tmpdir: str):
    pacer, clock = Pacer(MULAW_8K), [0.0]
    frame = bytes(160)

    def pace():
        pacer.push(frame)
        clock[0] += 0.02
        pacer.pull(clock[0])

    energy, window = EnergyDetector(8000), tone(8000)
    recorder = CallRecorder(os.path.join(tmpdir, "bench.wav"), sample_rate=8000)
    pcm, at = tone(8000).tobytes(), [0.0]

    def record():
        recorder.write_caller(pcm, at_ms=at[0])
        recorder.write_agent(pcm, at_ms=at[0])
        at[0] += 20

    # A Twilio call records μ-law both ways: the recorder keeps the codes and decodes at flush.
    phone = CallRecorder(
        os.path.join(tmpdir, "phone.wav"),
        sample_rate=8000,
        caller_format=MULAW_8K,
        agent_format=MULAW_8K,
    )
    ulaw, phone_at = bytes(range(96, 256)), [0.0]

    def record_phone():
        phone.write_caller(ulaw, at_ms=phone_at[0])
        phone.write_agent(ulaw, at_ms=phone_at[0])
        phone_at[0] += 20

    yield "Pacer push + pull (one frame)", pace

    # Stall recovery (voiceagents/audio/catchup.py): one call per three queued frames, only while
    # the pacer wins back a stall's gap; never on the steady path.
    splicer = Splicer(MULAW_8K)
    speech = ulaw_encode(tone(8000, 60, 118.0))
    a, b, c = speech[:160], speech[160:320], speech[320:]
    quiet = bytes([0xFF]) * 160
    yield "Stall catch-up: 3 frames -> 2, speech splice", lambda: splicer.three_to_two(a, b, c)
    yield "Stall catch-up: 3 frames -> 2, quiet frame", lambda: splicer.three_to_two(a, quiet, c)

    def vad():
        energy.reset()  # keep the noise floor low so every window takes the full (FFT) path
        energy.probability(window)

    yield "Energy VAD (20 ms window, full path)", vad
    yield "CallRecorder caller + agent frame (PCM16)", record
    yield "CallRecorder caller + agent frame (μ-law)", record_phone
    try:
        from voiceagents.audio import SileroDetector

        silero = SileroDetector(8000)
    except ImportError:
        return
    silero_window = tone(8000, 32)
    # Silero scores 32 ms windows; scale to a 20 ms frame.
    yield (
        "Silero VAD (per 20 ms, 32 ms windows)",
        (
            "scale",
            32 / 20,
            lambda: silero.probability(silero_window),
        ),
    )


def print_table(title: str, rows) -> None:
    print(f"\n{title}")
    print(f"{'transform':<48} {'best us':>9} {'median us':>10} {'core %':>8}")
    for label, fn in rows:
        scale = 1.0
        if isinstance(fn, tuple):
            _, scale, fn = fn
        best, median = measure(fn)
        best, median = best / scale, median / scale
        print(f"{label:<48} {best:9.2f} {median:10.2f} {100 * best / FRAME_US:7.3f}%")


def soxr_report() -> None:
    try:
        import soxr
    except ImportError:
        print("\nsoxr is not installed: pip install soxr to compare")
        return
    print(f"\nsoxr {soxr.__version__} ResampleStream (int16), 20 ms chunks")
    print(f"{'pair / quality':<24} {'best us':>9} {'held back ms':>13} {'chunk-invariant':>16}")
    rng = np.random.default_rng(0)
    for src, dst in [(24000, 8000), (8000, 24000)]:
        for quality in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
            stream = soxr.ResampleStream(src, dst, 1, dtype="int16", quality=quality)
            frame = tone(src)
            best, _ = measure(lambda s=stream, x=frame: s.resample_chunk(x), number=1000)
            # Held back: input fed minus output emitted, in steady state after a second.
            stream = soxr.ResampleStream(src, dst, 1, dtype="int16", quality=quality)
            x = tone(src, 1000)
            emitted = sum(
                len(stream.resample_chunk(x[i : i + src // 50])) for i in range(0, src, src // 50)
            )
            held_ms = 1000 - emitted * 1000 / dst
            noise = (rng.standard_normal(src) * 4000).astype(np.int16)
            whole = soxr.ResampleStream(src, dst, 1, dtype="int16", quality=quality)
            a = np.concatenate(
                [whole.resample_chunk(noise), whole.resample_chunk(noise[:0], last=True)]
            )
            split = soxr.ResampleStream(src, dst, 1, dtype="int16", quality=quality)
            cuts = np.sort(rng.integers(0, src, 30))
            b = np.concatenate(
                [split.resample_chunk(p) for p in np.split(noise, cuts)]
                + [split.resample_chunk(noise[:0], last=True)]
            )
            same = a.shape == b.shape and np.array_equal(a, b)
            print(f"{f'{src}->{dst} {quality}':<24} {best:9.2f} {held_ms:13.2f} {str(same):>16}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-pairs", action="store_true", help="every resampler rate pair")
    parser.add_argument("--compare-soxr", action="store_true", help="measure soxr streaming too")
    args = parser.parse_args(argv)
    print("Audio core: microseconds per 20 ms frame (one direction of one call)")
    print(f"Machine: {machine()}")
    print_table("Codecs and pass-through", codec_rows())
    pairs = [(a, b) for a in RATES for b in RATES if a != b] if args.all_pairs else TELEPHONY_PAIRS
    print_table("Resampling (int16 mono, 20 ms of input per call)", resample_rows(pairs))
    print_table("Full conversions (decode -> resample -> encode)", converter_rows())
    with tempfile.TemporaryDirectory() as tmpdir:
        print_table("Pacing, VAD, recording", pipeline_rows(tmpdir))
    if args.compare_soxr:
        soxr_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
