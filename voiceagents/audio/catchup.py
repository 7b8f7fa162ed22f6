"""Playing audio faster for a moment: three carrier frames into two (or two into one), for stall
recovery.

After a stall the caller has heard a gap and the queued audio is late by its length; the carrier
plays in real time, so the only ways to win that time back are to drop audio or to play it
faster. :class:`Splicer` does the second, one group of frames at a time (three into two, 1.5x;
two into one only for the last frame the pacer owes), and loses no words doing it:

- a quiet frame in the group (peak under :data:`QUIET_PEAK`, about -40 dBFS: a pause between
  words or sentences) is dropped whole: a pause 20 ms shorter;
- otherwise 20 ms are cut out of the group's speech where the audio is most like itself 20 ms
  later (a pitch period or a steady vowel repeats), and the cut is cross-faded over
  :data:`FADE_MS`. That is the classic overlap-add time-scale compression that jitter buffers use
  to "accelerate", at the granularity of one frame.

It runs only while the pacer owes time (a few dozen frames per stall) and costs tens of
microseconds per group with numpy, so the hot path without a stall never reaches it.
"""

from __future__ import annotations

import numpy as np

from . import g711, pcm
from .formats import AudioFormat, Encoding

__all__ = ["FADE_MS", "QUIET_PEAK", "Splicer"]

#: Peak sample magnitude below which a frame counts as a pause (-40 dBFS).
QUIET_PEAK = 328
#: Length of the cross-fade across a splice. Long enough not to click, short enough to fit.
FADE_MS = 5


class Splicer:
    """Turns three frames of ``fmt`` into two with the same content minus 20 ms."""

    def __init__(self, fmt: AudioFormat, frame_ms: int = 20) -> None:
        self.format = fmt
        self.frame_ms = frame_ms
        self._n = fmt.samples_for_ms(frame_ms)
        self._fade = max(1, min(self._n // 2, round(fmt.sample_rate * FADE_MS / 1000)))
        ramp = (1 - np.cos(np.linspace(0.0, np.pi, self._fade))) / 2
        self._fade_in = ramp
        self._fade_out = 1.0 - ramp

    def decode(self, data: bytes) -> np.ndarray:
        enc = self.format.encoding
        if enc is Encoding.MULAW:
            return g711.ulaw_decode(data)
        if enc is Encoding.ALAW:
            return g711.alaw_decode(data)
        return pcm.as_samples(data, big_endian=enc is Encoding.PCM16BE)

    def encode(self, samples: np.ndarray) -> bytes:
        enc = self.format.encoding
        if enc is Encoding.MULAW:
            return g711.ulaw_encode(samples)
        if enc is Encoding.ALAW:
            return g711.alaw_encode(samples)
        return pcm.to_bytes(samples, big_endian=enc is Encoding.PCM16BE)

    def three_to_two(self, a: bytes, b: bytes, c: bytes) -> tuple[bytes, bytes]:
        """Two frames standing for ``a + b + c`` played 1.5x as fast."""
        first, second = self.shorten((a, b, c))
        return first, second

    def two_to_one(self, a: bytes, b: bytes) -> bytes:
        """One frame standing for ``a + b``: the last 20 ms of a debt when only two frames are
        queued (a provider speaking in real time keeps no more here)."""
        (only,) = self.shorten((a, b))
        return only

    def shorten(self, frames: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """``frames`` minus one frame's worth: a quiet frame whole, else a spliced-out 20 ms."""
        if self.format.channels != 1:
            # Carriers are mono; for anything else drop the middle frame rather than splice.
            return frames[:1] + frames[2:] if len(frames) > 2 else frames[:1]
        decoded = [self.decode(f) for f in frames]
        peaks = [int(np.abs(x.astype(np.int32)).max(initial=0)) for x in decoded]
        quietest = min(range(len(frames)), key=peaks.__getitem__)
        if peaks[quietest] < QUIET_PEAK:
            return tuple(f for i, f in enumerate(frames) if i != quietest)
        return self._splice(np.concatenate(decoded).astype(np.float64), len(frames))

    def _splice(self, x: np.ndarray, k: int) -> tuple[bytes, ...]:
        n, w = self._n, self._fade
        # Cut [s, s + n) out, fading x[s:s+w] into x[s+n:s+n+w]; pick s where those two windows
        # are most alike (normalised correlation), over every s that leaves room for the fade.
        keep = (k - 1) * n
        span = keep - w + 1
        head, tail = x[:keep], x[n:]
        prod = np.concatenate(([0.0], np.cumsum(head * tail)))
        e_head = np.concatenate(([0.0], np.cumsum(head * head)))
        e_tail = np.concatenate(([0.0], np.cumsum(tail * tail)))
        cross = prod[w : w + span] - prod[:span]
        energy = np.sqrt(
            (e_head[w : w + span] - e_head[:span]) * (e_tail[w : w + span] - e_tail[:span])
        )
        score = cross / np.maximum(energy, 1.0)
        s = int(np.argmax(score))
        faded = x[s : s + w] * self._fade_out + x[s + n : s + n + w] * self._fade_in
        out = np.concatenate((x[:s], faded, x[s + n + w :]))
        out = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return tuple(self.encode(out[i * n : (i + 1) * n]) for i in range(k - 1))
