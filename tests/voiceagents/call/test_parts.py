"""CallerAudio, CallMetrics and LocalSpeechDetector."""

import base64
import json

import numpy as np

from tests.voiceagents.audio.signals import tone
from voiceagents.audio import MULAW_8K, PCM16_16K, ulaw_encode
from voiceagents.call.caller_audio import PENDING_AUDIO_MS, CallerAudio
from voiceagents.call.local_vad import LocalSpeechDetector
from voiceagents.call.metrics import COUNTERS, CallMetrics
from voiceagents.providers.base import CallerSpeechStarted, CallerSpeechStopped


class Sink:
    def __init__(self):
        self.sent: list[str] = []

    async def __call__(self, payload: str) -> None:
        self.sent.append(payload)


def frame(byte: int) -> tuple[str, bytes]:
    audio = bytes([byte]) * 160
    return base64.b64encode(audio).decode(), audio


async def test_caller_audio_is_held_in_order_then_passed_through_untouched():
    metrics, sink = CallMetrics(), Sink()
    inbound = CallerAudio(MULAW_8K, metrics)
    frames = [frame(b) for b in range(3)]
    for payload, audio in frames:
        inbound.hold(payload, audio)
    inbound.connect(sink, MULAW_8K)
    await inbound.flush()
    assert inbound.ready and inbound.convert is None
    later = frame(9)
    await inbound.forward(*later)
    assert sink.sent == [p for p, _ in frames] + [later[0]]
    assert sink.sent[-1] is later[0]  # the very same string: no decode, no re-encode
    assert metrics.caller_audio_buffered_frames == 3


async def test_held_caller_audio_is_bounded_oldest_first():
    metrics = CallMetrics()
    inbound = CallerAudio(MULAW_8K, metrics)
    frames = PENDING_AUDIO_MS // 20 + 5
    for n in range(frames):
        inbound.hold(*frame(n % 256))
    assert metrics.caller_audio_dropped_frames == 5
    sink = Sink()
    inbound.connect(sink, MULAW_8K)
    await inbound.flush()
    assert sink.sent[0] == frame(5)[0]


async def test_caller_audio_is_converted_once_when_the_provider_takes_another_format():
    sink = Sink()
    inbound = CallerAudio(MULAW_8K, CallMetrics())
    inbound.connect(sink, PCM16_16K)
    await inbound.flush()
    for _ in range(5):
        await inbound.forward(*frame(0x55))
    assert inbound.convert is not None
    sent = b"".join(base64.b64decode(p) for p in sink.sent)
    # 100 ms of PCM16 at 16 kHz is 3,200 bytes; the resampler may hold back a few ms.
    assert 2_800 <= len(sent) <= 3_200 and len(sent) % 2 == 0


def test_metrics_report_leaves_out_what_did_not_happen_and_adds_the_carriers():
    metrics = CallMetrics()
    metrics.frames_in = 7
    metrics.carrier["telnyx"] = stats = {"mark_fallbacks": 0}
    stats["mark_fallbacks"] = 2  # the carrier keeps counting after attaching them
    metrics.speech_stopped(10.0)
    metrics.agent_heard(10.25)
    metrics.agent_heard(11.0)  # no caller speech before this one: no latency
    report = metrics.report(duration_ms=1234)
    assert [k for k in report if k in COUNTERS] == list(COUNTERS)
    assert report["frames_in"] == 7 and report["duration_ms"] == 1234
    assert report["telnyx"] == {"mark_fallbacks": 2}
    assert report["response_latency_ms"] == [250.0]
    assert "greeting_latency_ms" not in report and "barge_in_clear_ms" not in report
    assert "barge_in_cuts" not in report and "network_delay_ms" not in report
    assert "jitter_ms" not in report
    assert report["response_latency_ms_p50"] == report["response_latency_ms_max"] == 250.0


def test_metrics_report_the_quality_figures():
    metrics = CallMetrics()
    for stopped, heard in ((1.0, 1.9), (3.0, 3.4), (5.0, 5.6), (7.0, 8.2)):
        metrics.speech_stopped(stopped)
        metrics.agent_heard(heard)
    metrics.barge_in(0.8, at_ms=4100, heard_ms=640, generated_ms=2000)
    metrics.barge_in(1.5)  # a barge-in whose cut was not measured
    metrics.false_interruption()
    metrics.network(47.26, float("nan"))  # a NaN estimate is "not measured", not JSON
    report = metrics.report(duration_ms=9000)
    assert report["barge_ins"] == 2 and report["false_interruptions"] == 1
    assert report["barge_in_clear_ms"] == [0.8, 1.5]
    # One entry per barge-in; the false interruption marks the latest.
    assert report["barge_in_cuts"] == [
        {"at_ms": 4100, "heard_ms": 640, "generated_ms": 2000},
        {"at_ms": None, "heard_ms": None, "generated_ms": None, "false": True},
    ]
    assert report["response_latency_ms"] == [900.0, 400.0, 600.0, 1200.0]
    # Nearest rank: every percentile is a latency that happened.
    assert report["response_latency_ms_p50"] == 600.0
    assert report["response_latency_ms_p90"] == report["response_latency_ms_p95"] == 1200.0
    assert report["response_latency_ms_max"] == 1200.0
    assert report["network_delay_ms"] == 47.3 and "jitter_ms" not in report
    json.dumps(report, allow_nan=False)


def test_local_speech_detector_finds_the_start_and_the_stop_in_carrier_audio():
    silence = np.zeros(4000, dtype=np.int16)
    audio = ulaw_encode(np.concatenate((silence, tone(1000, 8000, 0.6, 8000), silence)))
    detector = LocalSpeechDetector(MULAW_8K)
    events = [e for at in range(0, len(audio), 160) for e in detector.feed(audio[at : at + 160])]
    assert [type(e) for e in events] == [CallerSpeechStarted, CallerSpeechStopped]
    assert 450 <= events[0].audio_ms <= 550 and events[0].turn_id == ""
