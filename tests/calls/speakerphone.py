"""A fake caller's speakerphone: what its loudspeaker played comes back into its microphone."""

from __future__ import annotations

import asyncio

import numpy as np

from voiceagents.audio.g711 import ulaw_decode, ulaw_encode

FRAME = 160  # 20 ms of μ-law


class SpeakerphoneCaller:
    """Sends, every 20 ms, what the fake caller's loudspeaker played ``delay_ms`` ago at
    ``gain_db``, plus the caller's own voice, as a speakerphone's microphone would."""

    def __init__(
        self, caller, *, delay_ms: int, gain_db: float, noise: float = 30.0, seed: int = 11
    ):
        self.caller = caller
        self.noise = noise
        self.delay_frames = delay_ms // 20
        self.gain = 10 ** (gain_db / 20)
        self.voice = np.zeros(0)
        self.rng = np.random.default_rng(seed)
        self.echo_frames = 0
        #: What the microphone sent, frame by frame (linear samples).
        self.sent: list[np.ndarray] = []

    async def run(self, seconds: float, voice_at: float | None = None, voice=None):
        loop = asyncio.get_running_loop()
        began = loop.time()
        played = self.caller.playback.played_bytes
        heard: list[np.ndarray] = [np.zeros(FRAME)] * self.delay_frames
        speaker = np.zeros(0)
        for index in range(int(seconds * 50)):
            now_played = self.caller.playback.played_bytes
            chunk = ulaw_decode(bytes(self.caller.media_in[played:now_played])).astype(float)
            played = now_played
            # The loudspeaker's output, one frame per tick (silence when it has nothing).
            speaker = np.concatenate([speaker, chunk])
            frame = np.zeros(FRAME)
            if len(speaker):
                frame[: min(FRAME, len(speaker))] = speaker[:FRAME]
                speaker = speaker[FRAME:]
                self.echo_frames += 1
            heard.append(frame)
            mic = heard.pop(0) * self.gain + self.rng.standard_normal(FRAME) * self.noise
            if voice is not None and voice_at is not None:
                offset = int((index * 0.02 - voice_at) * 8000)
                if 0 <= offset < len(voice):
                    mic[: len(voice[offset : offset + FRAME])] += voice[offset : offset + FRAME]
            self.sent.append(mic)
            await self.caller.media(ulaw_encode(mic.clip(-32000, 32000).astype(np.int16)))
            delay = began + (index + 1) * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
