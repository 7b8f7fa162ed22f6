"""Is this caller frame only the agent's own voice coming back? (speakerphone echo)

A caller on a speakerphone (or a phone with poor echo cancelling) sends the agent's voice back to
us: a delayed, attenuated copy of what we played, mixed with whatever the caller's room adds. A
voice detector (the provider's or ours) hears it as speech and the agent interrupts itself.

:class:`EchoDetector` keeps the agent audio sent in the last ``lead + max delay`` ms (8 kHz
samples, in a ring) and compares each caller frame with it by normalized cross-correlation at
every lag of that window: around the echo path already found first (the path of a call hardly
moves), else coarsely at 2 kHz with the best few lags refined at 8 kHz. A frame is echo when a lag
matches closely and the frame is no louder than the agent audio at that lag (an echo is
attenuated; a caller who happens to sound like the agent is rarely also quieter *and*
sample-aligned with it). Speech over the echo (double talk) lowers the correlation, so a caller
who really talks still gets through. Thresholds and measurements: docs/interruptions.md.

Cost: nothing but a clock compare unless agent audio was sent within the window; a decode and a
dot product for a quiet frame; then ~16 µs of CPU per 20 ms caller frame while the echo path is
followed, ~22 µs on average while the caller talks over the agent (searches back off to one
frame in four when nothing matches). No system call, no thread, no allocation beyond numpy
temporaries.
"""

from __future__ import annotations

import numpy as np

from .convert import decode
from .formats import AudioFormat

#: All comparisons run at the phone band's rate: every carrier format is a multiple of it.
RATE = 8000
#: A lag whose normalized correlation reaches this is the same signal. An echo of clean agent
#: audio scores 0.95-1.0 even through two G.711 codings; unrelated voiced speech can reach
#: 0.8-0.86 at some lag of a 0.5 s window by chance, hence the high bar for a new echo path...
ECHO_MIN_CORRELATION = 0.9
#: ...and a lower one near the path already found (a room's reflections and the handset's
#: filtering lower the correlation of a real echo; chance matches that near one lag are rare).
ECHO_TRACKED_CORRELATION = 0.75
#: A new path through a room (reflections keep the correlation of any one lag below ~0.9) is
#: taken at this bar when the frame is also well below the agent audio (``ECHO_FAINT_GAIN``).
ECHO_FAINT_MIN_CORRELATION = 0.85
#: Near that path, a frame well below the agent audio it follows (by ``ECHO_FAINT_GAIN``, about
#: -5 dB, where a room's echo sits and a caller talking over it does not) needs only this.
ECHO_FAINT_CORRELATION = 0.4
ECHO_FAINT_GAIN = 0.3
#: An echo comes back at least 3 dB below what was played at the matching lag (energy ratio):
#: telephone echo paths lose 6 dB or more (ITU-T G.168 assumes an echo return loss >= 6 dB), so
#: a copy as loud as the agent is someone playing the same sound (a test tone, hold music).
ECHO_MAX_GAIN = 0.5
#: Below this mean square (-50 dBFS) a frame is too quiet for any voice detector: not compared.
QUIET_POWER = 1e-5
#: Samples averaged into one for the coarse search (8 kHz → 2 kHz).
COARSE = 4
#: Coarse lags refined at full rate: the best few, if they correlate at least this well.
CANDIDATES = 4
COARSE_MIN_CORRELATION = 0.6
#: After this many full searches without an echo, only one frame in ``BACKOFF_EVERY`` is
#: searched (an echo that begins then is found within 60 ms; voice detectors need longer).
BACKOFF_AFTER = 5
BACKOFF_EVERY = 4
#: Only searches whose best correlation stays under this count towards the backoff.
BACKOFF_BELOW = 0.7
#: Around the last echo lag found, the lags tried first (±10 ms at 8 kHz).
TRACK = 80


class EchoDetector:
    """One per call. :meth:`played` for every agent frame sent, :meth:`is_echo` for every
    caller frame; ``now`` is the event loop's clock (the session passes it)."""

    def __init__(
        self,
        caller_format: AudioFormat,
        agent_format: AudioFormat,
        *,
        max_delay_ms: int,
        lead_ms: int,
        frame_ms: int = 20,
    ):
        self.caller_format = caller_format
        self.agent_format = agent_format
        # The echo of audio sent now arrives after the carrier has played it (up to ``lead``
        # later) plus the round trip and the room: keep that much, and one frame either side.
        self.window = int((lead_ms + max_delay_ms + 2 * frame_ms) * RATE / 1000)
        # Every sample is written twice, ``window`` apart, so the latest ``window`` samples are
        # always one contiguous slice (no copy per check).
        self._ring = np.zeros(2 * self.window, dtype=np.float32)
        self._pos = 0
        #: Seconds after the last agent frame during which caller frames are checked.
        self.hold_s = self.window / RATE
        self._agent_at = float("-inf")
        #: Where in the window the last echo matched (the echo path), if one did.
        self._lag: int | None = None
        #: Full searches in a row that found no echo: past ``BACKOFF_AFTER``, only one frame in
        #: ``BACKOFF_EVERY`` is searched until an echo is found (a caller talking over the agent
        #: would otherwise cost a full search every frame).
        self._misses = 0
        self._skipped = 0
        #: Caller frames compared, and found to be echo.
        self.checked = 0
        self.echoes = 0

    # -- agent audio (every outbound frame) ------------------------------------------------------

    def played(self, data: bytes, now: float) -> None:
        samples = self._samples(data, self.agent_format)
        n = len(samples)
        if n == 0:
            return
        if n >= self.window:
            samples, n = samples[-self.window :], self.window
        window, pos, ring = self.window, self._pos, self._ring
        first = min(n, window - pos)
        ring[pos : pos + first] = samples[:first]
        ring[pos + window : pos + window + first] = samples[:first]
        rest = n - first
        if rest:
            ring[:rest] = samples[first:]
            ring[window : window + rest] = samples[first:]
        self._pos = (pos + n) % window
        self._agent_at = now

    # -- caller audio (every inbound frame) ------------------------------------------------------

    def is_echo(self, data: bytes, now: float) -> bool:
        """True if the caller frame ``data`` is only an echo of recent agent audio."""
        if now - self._agent_at > self.hold_s:
            return False  # no agent audio lately: nothing can echo
        if self._misses >= BACKOFF_AFTER:
            # Nothing like an echo for a while (a caller talking over the agent, a sound as
            # loud as it): look at one frame in BACKOFF_EVERY only, until an echo is found.
            self._skipped += 1
            if self._skipped < BACKOFF_EVERY:
                return False
            self._skipped = 0
        x = self._samples(data, self.caller_format)
        m = len(x)
        if m < COARSE or m > self.window // 2:
            return False
        energy = float(np.dot(x, x))
        if energy <= QUIET_POWER * m:
            return False  # too quiet to set off a voice detector, echo or not
        self.checked += 1
        ref = self._ring[self._pos : self._pos + self.window]
        # The echo path hardly moves during a call: try around the last lag found first.
        if self._lag is not None:
            tracked = self._best(ref, x, energy, self._lag - TRACK, self._lag + TRACK)
            if tracked is not None and (
                self._accept(tracked, energy, ECHO_TRACKED_CORRELATION)
                or self._accept(tracked, energy, ECHO_FAINT_CORRELATION, ECHO_FAINT_GAIN)
            ):
                return True
        if energy > ECHO_MAX_GAIN * _window_energies(ref, m).max():
            self._misses += 1  # louder than any echo of the window's audio could be
            return False
        found = None
        # Search every lag coarsely (2 kHz); refine the best few at 8 kHz (a voiced frame
        # matches at several pitch periods about as well).
        n = (self.window // COARSE) * COARSE
        ref_c = ref[:n].reshape(-1, COARSE).mean(axis=1)
        x_c = x[: m // COARSE * COARSE].reshape(-1, COARSE).mean(axis=1)
        score = np.abs(_ncc(ref_c, x_c, float(np.dot(x_c, x_c)))[0])
        if len(score) > CANDIDATES:
            candidates = np.argpartition(score, -CANDIDATES)[-CANDIDATES:]
        else:
            candidates = np.arange(len(score))
        for candidate in candidates:
            if score[candidate] < COARSE_MIN_CORRELATION:
                continue
            lag = int(candidate) * COARSE
            refined = self._best(ref, x, energy, lag - COARSE, lag + COARSE)
            if refined is not None and (found is None or refined[0] > found[0]):
                found = refined
        if found is not None and (
            self._accept(found, energy, ECHO_MIN_CORRELATION)
            or self._accept(found, energy, ECHO_FAINT_MIN_CORRELATION, ECHO_FAINT_GAIN)
        ):
            return True
        if found is None or found[0] < BACKOFF_BELOW or energy > found[2] * ECHO_MAX_GAIN:
            self._misses += 1  # nothing like the agent's audio (near misses keep searching)
        return False

    def _accept(
        self, found: tuple[float, int, float], energy: float, bar: float, gain=ECHO_MAX_GAIN
    ) -> bool:
        """The best match decides: the same signal, and no louder than it was played."""
        correlation, lag, lag_energy = found
        if correlation < bar or energy > lag_energy * gain:
            return False
        self._lag = lag
        self._misses = 0
        self.echoes += 1
        return True

    def _best(self, ref, x, energy: float, lo: int, hi: int) -> tuple[float, int, float] | None:
        """The best match of ``x`` in ``ref`` at lags ``lo..hi`` (8 kHz): |correlation|, lag,
        energy of ``ref`` there."""
        m = len(x)
        lo, hi = max(0, lo), min(len(ref) - m, hi)
        if hi < lo:
            return None
        ncc, lag_energy = _ncc(ref[lo : hi + m], x, energy)
        best = int(np.argmax(np.abs(ncc)))
        return abs(float(ncc[best])), lo + best, float(lag_energy[best])

    def _samples(self, data: bytes, fmt: AudioFormat) -> np.ndarray:
        samples = decode(data, fmt.encoding)
        if fmt.channels > 1:
            samples = samples[:: fmt.channels]
        step = fmt.sample_rate // RATE
        if step > 1:
            samples = samples[::step]
        return samples.astype(np.float32) * (1.0 / 32768.0)


def _window_energies(ref: np.ndarray, m: int) -> np.ndarray:
    """The energy of every ``m``-sample window of ``ref`` (one per lag)."""
    squares = np.empty(len(ref) + 1, dtype=np.float64)
    squares[0] = 0.0
    np.cumsum(np.square(ref, dtype=np.float64), out=squares[1:])
    return squares[m:] - squares[:-m]


def _ncc(ref: np.ndarray, x: np.ndarray, energy: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalized cross-correlation of ``x`` with ``ref`` at every lag, and each lag's energy."""
    corr = np.correlate(ref, x, "valid")
    lag_energy = _window_energies(ref, len(x))
    return corr / np.sqrt(energy * lag_energy + 1e-12), lag_energy
