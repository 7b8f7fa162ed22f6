"""Streaming sample-rate conversion: a stateful polyphase FIR in numpy.

Why this design
---------------
Telephony wants low delay and a clean phone band: pipecat's default resampler adds 75-105 ms per
direction, and ``audioop.ratecv`` does no anti-alias filtering, so everything above 4 kHz folds
back into the band when TTS at 24 kHz is sent to an 8 kHz caller.

The filter is a Kaiser-windowed sinc (80 dB design) with its passband to 0.85 times the lower
Nyquist frequency. Against 8 kHz the stopband starts at 1.15 times Nyquist (4.6 kHz): nothing that
could fold into 300-3400 Hz survives, what folds into 3.4-4 kHz is outside the phone band, and
the filter stays half as long. For higher rates the stopband starts at Nyquist, so nothing folds
at all. The group delay, which is the added latency, depends only on the lower rate: 2.1 ms
against 8 or 16 kHz, 1.5 ms against 22.05 kHz, 1.4 ms against 24 kHz, 0.76 ms against 44.1 kHz.

Samples go in as int16 and the coefficients are integers scaled by 2**20, so every product and
partial sum is an integer below 2**53 and exact in float64. The result therefore does not depend
on summation order, which is what makes the output bit-identical for any split of the input
(chunk invariance) while still using BLAS. Output ``m`` is emitted as soon as the input sample it
lines up with has arrived: after ``n`` input samples exactly ``ceil(n * dst / src)`` output
samples have come out, so no audio is held back beyond the filter's own delay.

Whole blocks of ``P`` input samples (a multiple of the rate ratio's period, chosen to divide a
20 ms frame) go through one matrix product; a trailing partial block is computed column by column
from the same matrix, so the two paths give the same integers.

Measurement that chose it (this machine: 2 vCPU AMD EPYC, Python 3.11.7, numpy 2.4.6,
scipy-openblas 0.3.31; 20 ms frames, best of 7 runs; ``python -m bench.audio --all-pairs
--compare-soxr`` reproduces them):

====================  =========================  ===========================  ===============
implementation        us per 20 ms frame         added latency                chunk-invariant
====================  =========================  ===========================  ===============
this module           7.8 (24k->8k), 7.7         2.1 ms (impulse peak)        yes, bit-exact
                      (8k->24k), 7.1-21 over
                      all 30 pairs
soxr 1.1 QQ           3.2                        0 ms                         no
soxr 1.1 LQ           3.5                        25 ms held back              no
soxr 1.1 MQ           3.7                        15 ms held back              no
soxr 1.1 HQ           3.7                        21 ms held back              no
soxr 1.1 VHQ          3.9                        37.5 ms held back            no
first numpy draft     30-40 (gather + einsum)    2.1 ms                       yes
====================  =========================  ===========================  ===============

soxr is about twice as fast, but every quality that filters holds back 15-38 ms of output per
conversion (measured as input fed minus output emitted in steady state), and its output depends
on how the input was split; ``QQ``, which holds nothing back, has no anti-alias filter (a 5 kHz
tone going 24k->8k comes out at 0 dB, against -87 dB for ``LQ``). None meets the 5 ms bound, so soxr is not a dependency. The numpy filter
measures 83-98 dB alias rejection for 24k->8k and 16k->8k, and a passband flat to 0.01 dB.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from math import ceil, gcd

import numpy as np

__all__ = ["Resampler", "filter_delay_ms"]

logger = logging.getLogger(__name__)

#: Kaiser design attenuation in dB; the measured alias rejection is above 70 dB.
_ATTENUATION_DB = 80.0
#: Passband edge and stopband edge as fractions of the lower Nyquist frequency. Against 8 kHz the
#: stopband starts at 1.15 (4.6 kHz): what folds into 3.4-4 kHz is outside the phone band, and the
#: filter is half as long. Above that nothing may fold at all, so the stopband starts at Nyquist.
_PASS = 0.85
_STOP_TELEPHONY = 1.15
_STOP = 1.0
_TELEPHONY_RATE = 8000
#: Fixed-point scale of the coefficients; see the module docstring for why it is exact.
_SHIFT = 20
_SCALE = float(1 << _SHIFT)
_UNSCALE = 1.0 / _SCALE
#: Largest reduced interpolation or decimation factor accepted (44.1k<->8k needs 441).
_MAX_FACTOR = 1000


@dataclass(frozen=True, slots=True)
class _Bank:
    up: int
    down: int
    taps: int  # per-phase filter length K, in input samples
    block: int  # P input samples per matrix row
    block_out: int  # output samples per block
    matrix: np.ndarray  # (P + K - 1, block_out) integer-valued float64, read-only
    groups: tuple[tuple[int, int, int, int, np.ndarray], ...]  # row/column bands of the matrix
    delay_ms: float


def _kaiser_beta(attenuation: float) -> float:
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)


def _choose_block(src_rate: int, down: int, taps: int) -> int:
    """Smallest multiple of the period that divides a 20 ms frame and spans the filter."""
    frame = src_rate * 20 // 1000 if (src_rate * 20) % 1000 == 0 else 0
    for block in range(down, frame + 1, down):
        if frame % block == 0 and block >= taps - 1:
            return block
    return down * max(1, ceil((taps - 1) / down))


def _column_groups(matrix: np.ndarray, blocks_per_frame: int):
    """Split the block matrix into diagonal bands so sparse matrices cost less.

    Each output column touches only ``K`` rows; when the block is much longer than the filter,
    a few smaller products over bands of columns beat one dense product. The cost model (about
    0.11 ns per multiply-add plus 1.5 us per product call) was fitted on this machine.
    """
    best = None
    for count in range(1, min(8, matrix.shape[1]) + 1):
        edges = np.linspace(0, matrix.shape[1], count + 1).astype(int)
        groups = []
        for c0, c1 in zip(edges[:-1], edges[1:], strict=True):
            used = np.flatnonzero(matrix[:, c0:c1].any(axis=1))
            r0, r1 = int(used[0]), int(used[-1]) + 1
            sub = np.ascontiguousarray(matrix[r0:r1, c0:c1])
            sub.flags.writeable = False
            groups.append((r0, r1, int(c0), int(c1), sub))
        cost = sum(g[4].size for g in groups) * blocks_per_frame * 0.11e-3 + 1.5 * count
        if best is None or cost < best[0]:
            best = (cost, tuple(groups))
    return best[1]


@functools.lru_cache(maxsize=64)
def _bank(src_rate: int, dst_rate: int) -> _Bank:
    g = gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    if up > _MAX_FACTOR or down > _MAX_FACTOR:
        raise ValueError(
            f"cannot resample {src_rate} Hz -> {dst_rate} Hz: the ratio {up}/{down} is too fine"
        )
    nyquist = min(src_rate, dst_rate) / 2
    stop = _STOP_TELEPHONY if min(src_rate, dst_rate) <= _TELEPHONY_RATE else _STOP
    fast_rate = src_rate * up
    width = (stop - _PASS) * nyquist
    length = ceil((_ATTENUATION_DB - 8) / (2.285 * 2 * np.pi * width / fast_rate)) + 1
    taps = ceil(length / up)
    length = taps * up
    t = np.arange(length) - (length - 1) / 2
    cutoff = (_PASS + stop) * nyquist / fast_rate
    proto = cutoff * np.sinc(cutoff * t) * np.kaiser(length, _kaiser_beta(_ATTENUATION_DB)) * up
    # phases[p, k] = proto[p + k * up]; reversed so a window of ascending input lines up with it.
    phases = np.rint(proto.reshape(taps, up).T[:, ::-1] * _SCALE)

    block = _choose_block(src_rate, down, taps)
    block_out = block * up // down
    matrix = np.zeros((block + taps - 1, block_out))
    for r in range(block_out):
        start, phase = divmod(r * down, up)
        matrix[start : start + taps, r] = phases[phase]
    matrix.flags.writeable = False
    groups = _column_groups(matrix, max(1, src_rate // 50 // block))
    delay_ms = (length - 1) / 2 / fast_rate * 1000
    logger.debug(
        "resampler %s->%s: %d/%d, %d taps/phase, block %d, delay %.2f ms",
        src_rate,
        dst_rate,
        up,
        down,
        taps,
        block,
        delay_ms,
    )
    return _Bank(up, down, taps, block, block_out, matrix, groups, delay_ms)


def filter_delay_ms(src_rate: int, dst_rate: int) -> float:
    """Latency the resampler adds between these rates (its filter's group delay), in ms."""
    if src_rate == dst_rate:
        return 0.0
    return _bank(src_rate, dst_rate).delay_ms


class Resampler:
    """Streaming, chunk-size-invariant int16 mono resampler.

    Feed chunks of any size with :meth:`process`; the concatenated output is identical for every
    way of splitting the same input. Equal rates pass samples through untouched.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._bank = None if src_rate == dst_rate else _bank(src_rate, dst_rate)
        self.reset()

    @property
    def latency_ms(self) -> float:
        """Group delay of the filter: how far behind its input the output runs."""
        return 0.0 if self._bank is None else self._bank.delay_ms

    def reset(self) -> None:
        """Forget all history, as for a new independent stream."""
        if self._bank is not None:
            self._history = np.zeros(self._bank.taps - 1)
        self._pending = np.zeros(0)
        self._emitted = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk of int16 samples; returns the output now due."""
        bank = self._bank
        if bank is None or samples.size == 0:
            return samples
        buf = np.concatenate((self._history, self._pending, samples))
        span = bank.taps - 1
        arrived = buf.size - span
        blocks, rest = divmod(arrived, bank.block)
        parts = []
        if blocks:
            rows = np.ndarray((blocks, bank.block + span), np.float64, buf, 0, (bank.block * 8, 8))
            if len(bank.groups) == 1:
                full = np.dot(rows, bank.matrix).ravel()
            else:
                full = np.empty((blocks, bank.block_out))
                for r0, r1, c0, c1, sub in bank.groups:
                    full[:, c0:c1] = np.dot(rows[:, r0:r1], sub)
                full = full.ravel()
            parts.append(full[self._emitted :] if self._emitted else full)
            self._emitted = 0
        tail_start = blocks * bank.block
        ready = -(-rest * bank.up // bank.down)
        if ready > self._emitted:
            window = np.zeros(bank.block + span)
            window[: span + rest] = buf[tail_start:]
            parts.append(np.dot(window, bank.matrix[:, self._emitted : ready]))
            self._emitted = ready
        self._history = buf[tail_start : tail_start + span]
        self._pending = buf[tail_start + span :]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return _to_int16(out)

    def flush(self) -> np.ndarray:
        """Push the filter's remaining delay out with silence, then reset.

        Call at the end of a stream so its last couple of milliseconds are not lost.
        """
        if self._bank is None:
            return np.zeros(0, dtype=np.int16)
        pad = ceil(self._bank.delay_ms * self.src_rate / 1000) + 1
        out = self.process(np.zeros(pad, dtype=np.int16))
        self.reset()
        return out


def _to_int16(acc: np.ndarray) -> np.ndarray:
    acc *= _UNSCALE
    np.rint(acc, out=acc)
    np.maximum(acc, -32768.0, out=acc)
    np.minimum(acc, 32767.0, out=acc)
    return acc.astype(np.int16)
