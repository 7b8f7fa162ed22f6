"""Audio core of the call world: formats, G.711, resampling, pacing, VAD and recording.

Plain numpy, no Django: everything here runs per 20 ms frame inside a call. See ``docs/audio.md``
for how the pieces fit and ``bench/audio.py`` for what each costs.
"""

from .convert import Converter, decode, encode
from .formats import (
    ALAW_8K,
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    PCM16_24K,
    AudioFormat,
    Encoding,
)
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .pacer import ClearResult, PacedFrame, Pacer, PacerRunner
from .pcm import (
    SampleCarry,
    apply_gain,
    as_samples,
    db_to_gain,
    downmix,
    mix,
    rms_dbfs,
    silence,
    to_bytes,
    upmix,
)
from .recorder import CallRecorder, RecordingInfo, repair_wav
from .resample import Resampler, filter_delay_ms
from .vad import (
    EnergyDetector,
    SileroDetector,
    SpeechDetector,
    VADEvent,
    VADUnavailable,
    VoiceActivityDetector,
    create_vad,
)

__all__ = [
    "ALAW_8K",
    "AudioFormat",
    "CallRecorder",
    "ClearResult",
    "Converter",
    "Encoding",
    "EnergyDetector",
    "MULAW_8K",
    "PCM16_16K",
    "PCM16_24K",
    "PCM16_8K",
    "PacedFrame",
    "Pacer",
    "PacerRunner",
    "RecordingInfo",
    "Resampler",
    "SampleCarry",
    "SileroDetector",
    "SpeechDetector",
    "VADEvent",
    "VADUnavailable",
    "VoiceActivityDetector",
    "alaw_decode",
    "alaw_encode",
    "apply_gain",
    "as_samples",
    "create_vad",
    "db_to_gain",
    "decode",
    "downmix",
    "encode",
    "filter_delay_ms",
    "mix",
    "repair_wav",
    "rms_dbfs",
    "silence",
    "to_bytes",
    "ulaw_decode",
    "ulaw_encode",
    "upmix",
]
