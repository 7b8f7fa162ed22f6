"""Caller speech found on our side, for providers that declare ``needs_local_vad``.

Such a provider (e.g. a pipeline whose STT reports no speech start) gives the session no
barge-in trigger. The session then feeds the caller audio to a voice activity detector
(``voiceagents.audio.vad``) and handles the ``CallerSpeechStarted``/``Stopped`` events found here
exactly like a provider's own. They carry no turn id (the provider names the caller's turns with
its transcripts) and the position in the caller audio where the speech began or ended.
"""

from __future__ import annotations

from ..audio.convert import Converter
from ..audio.formats import PCM16_8K, AudioFormat
from ..audio.vad import VoiceActivityDetector, create_vad
from ..providers.base import CallerSpeechStarted, CallerSpeechStopped

#: The detector's input: the phone band is all the carriers send.
VAD_FORMAT = PCM16_8K


class LocalSpeechDetector:
    def __init__(self, caller_format: AudioFormat, vad: VoiceActivityDetector | None = None):
        self.vad = vad or create_vad("energy", sample_rate=VAD_FORMAT.sample_rate)
        self._to_pcm = None if caller_format == VAD_FORMAT else Converter(caller_format, VAD_FORMAT)

    def feed(self, audio: bytes) -> list[CallerSpeechStarted | CallerSpeechStopped]:
        """Caller audio (the carrier's inbound format); the speech starts and stops it ends."""
        if self._to_pcm is not None:
            audio = self._to_pcm.convert(audio)
        return [
            CallerSpeechStarted(audio_ms=int(event.at_ms))
            if event.kind == "start"
            else CallerSpeechStopped(audio_ms=int(event.at_ms))
            for event in self.vad.process(audio)
        ]
