"""Call recording: a stereo WAV (caller left, agent right) written incrementally.

Both channels sit on the call clock (milliseconds since the call started), so they stay aligned
however the audio arrives: gaps become silence, and agent audio that a barge-in ``clear`` dropped
before it was played is taken back out. To allow that, the most recent ``holdback_ms`` of audio
stays in memory; everything older is final and goes to the file once ``flush_ms`` of it (a
quarter of a second by default) has gathered: a few writes a second, never per frame. So a
process killed mid-call leaves a file missing at most the last ``holdback_ms + flush_ms``
(1.25 s) of audio. Memory per call is bounded by ``max_buffer_bytes`` (1 MB by default) whatever the call
length.

The recorder runs for every frame of every call, so storing a frame is a plain byte copy: audio
is held as it arrived (G.711 codes, or PCM16 from the converter) and only decoded to samples, a
block at a time, when it goes to the file.

The header is rewritten with the true sizes at every flush and on :meth:`CallRecorder.close`;
a file left behind by a crash is fixed by :func:`repair_wav`. Storing the finished file (Django's
storage API, S3, ...) is the caller's business: this module only writes a local path.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .convert import Converter
from .formats import AudioFormat, Encoding
from .g711 import _ALAW_DECODE, _ULAW_DECODE

__all__ = ["CallRecorder", "RecordingInfo", "repair_wav"]

logger = logging.getLogger(__name__)

_HEADER_SIZE = 44
_CHANNELS = 2
_FRAME = 2 * _CHANNELS
#: RIFF sizes are 32-bit: past this the recording stops (about 37 hours at 8 kHz).
_MAX_DATA = 0xFFFFFFFF - _HEADER_SIZE
#: Audio goes to the file in blocks of at most this many frames, so that decoding a flush (or a
#: long stretch of silence) needs little memory beyond the buffer.
_BLOCK = 16384
CALLER, AGENT = 0, 1


def _g711_table(fmt: AudioFormat, sample_rate: int) -> np.ndarray | None:
    """The decode table for mono G.711 at ``sample_rate`` (no resampling needed), else None."""
    if fmt.channels != 1 or fmt.sample_rate != sample_rate:
        return None
    return {Encoding.MULAW: _ULAW_DECODE, Encoding.ALAW: _ALAW_DECODE}.get(fmt.encoding)


def _shift(view: memoryview, n: int, fill: int) -> None:
    """Move ``view[n:]`` to the front and set the ``n`` bytes freed at the end to ``fill``."""
    view[: len(view) - n] = view[n:]  # a memmove: numpy would copy through a temporary
    np.frombuffer(view, np.uint8)[len(view) - n :] = fill


class _Track:
    """One channel's audio not yet on disk, held as the bytes that arrived, by buffer position.

    G.711 mono at the recording rate keeps its codes (one byte a sample); anything else goes
    through the converter to PCM16 (two bytes). Storing a frame is one slice copy into ``store``.
    """

    __slots__ = ("converter", "end", "fill", "store", "table", "width", "written")

    def __init__(self, fmt: AudioFormat, own: AudioFormat, capacity: int) -> None:
        self.table = _g711_table(fmt, own.sample_rate)
        g711 = self.table is not None
        self.converter = None if g711 else Converter(fmt, own)  # a pass-through for ``own``
        self.width = 1 if g711 else 2
        # Positions never written (gaps, dropped agent audio) must decode to exactly 0. PCM16 zero
        # bytes and µ-law code 0xFF do; A-law has no code for 0, so an A-law track also keeps a
        # byte per position, 1 once written.
        self.fill = 0xFF if self.table is _ULAW_DECODE else 0
        # Memoryviews: assigning bytes to a slice of one is a bare memcpy, far cheaper than numpy.
        self.store = memoryview(np.full(capacity * self.width, self.fill, dtype=np.uint8))
        alaw = self.table is _ALAW_DECODE
        self.written = memoryview(np.zeros(capacity, dtype=np.uint8)) if alaw else None
        self.end = 0  # where the next untimed chunk goes

    @property
    def nbytes(self) -> int:
        return len(self.store) + (len(self.written) if self.written is not None else 0)

    def samples(self, i: int, j: int) -> np.ndarray:
        """Positions ``[i, j)`` as int16 samples."""
        stored = np.frombuffer(self.store, np.uint8)[i * self.width : j * self.width]
        if self.table is None:
            return stored.view("<i2")
        samples = self.table.take(stored)  # three times faster than table[stored]
        if self.written is not None:
            samples *= np.frombuffer(self.written, np.uint8)[i:j]  # 1 if written, else 0
        return samples

    def clear(self, i: int) -> None:
        """Make positions ``i`` onwards silent."""
        np.frombuffer(self.store, np.uint8)[i * self.width :] = self.fill
        if self.written is not None:
            np.frombuffer(self.written, np.uint8)[i:] = 0

    def drop(self, n: int) -> None:
        """Forget the first ``n`` positions (now on disk); the ones freed at the end are silent."""
        _shift(self.store, n * self.width, self.fill)
        if self.written is not None:
            _shift(self.written, n, 0)


def _header(sample_rate: int, data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        sample_rate,
        sample_rate * _FRAME,
        _FRAME,
        16,
        b"data",
        data_bytes,
    )


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What :meth:`CallRecorder.close` wrote."""

    path: Path
    sample_rate: int
    frames: int
    #: Caller or agent audio that arrived for a time already written, and was dropped.
    late_ms: float

    @property
    def duration_ms(self) -> float:
        return self.frames * 1000.0 / self.sample_rate


class CallRecorder:
    """Writes caller and agent audio to a stereo 16-bit WAV file as the call goes.

    Write caller audio as it arrives (:meth:`write_caller`) and agent audio as it is actually
    played (:meth:`write_agent`, fed from the pacer's frames with their play times); call
    :meth:`clear_agent` on barge-in. Timestamps are ms on the call clock; without one a chunk
    continues its channel where the previous one ended.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: int = 8000,
        caller_format: AudioFormat | None = None,
        agent_format: AudioFormat | None = None,
        holdback_ms: int = 1000,
        flush_ms: int = 250,
        flush_bytes: int | None = None,
        max_buffer_bytes: int = 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._holdback = sample_rate * holdback_ms // 1000
        # ``flush_bytes`` (of stereo PCM16), if given, instead of ``flush_ms``.
        flush_frames = (
            sample_rate * flush_ms // 1000 if flush_bytes is None else flush_bytes // _FRAME
        )
        self._flush_frames = max(1, flush_frames)
        needed = self._holdback + self._flush_frames
        if max_buffer_bytes // _FRAME <= needed:
            raise ValueError("max_buffer_bytes must hold holdback_ms plus flush_ms of audio")
        # One second of slack above what must be held, so 20 ms chunks never force a flush.
        self._capacity = min(max_buffer_bytes // _FRAME, needed + sample_rate)
        own = AudioFormat(Encoding.PCM16, sample_rate)
        self._tracks = [
            _Track(caller_format or own, own, self._capacity),
            _Track(agent_format or own, own, self._capacity),
        ]
        self._base = 0  # call-clock sample index of buffer position 0; everything before is on disk
        self._final = 0  # samples before this index can no longer change
        self._high = 0  # highest sample index written on any channel
        self._late = 0
        self._data_bytes = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - owned by the recorder until close()
        self._file.write(_header(sample_rate, 0))
        self._file.flush()  # a valid (empty) WAV from the start, whenever the process dies
        self._closed = False
        self._full = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of audio held in memory, which is at most ``max_buffer_bytes``."""
        return sum(track.nbytes for track in self._tracks)

    @property
    def written_ms(self) -> float:
        """Milliseconds of stereo audio already on disk."""
        return self._data_bytes / _FRAME * 1000.0 / self.sample_rate

    def write_caller(self, data: bytes, at_ms: float | None = None) -> None:
        """Add caller audio (in ``caller_format``) starting at ``at_ms`` on the call clock."""
        self._write(self._tracks[CALLER], data, at_ms)

    def write_agent(self, data: bytes, at_ms: float | None = None) -> None:
        """Add agent audio (in ``agent_format``) as played, starting at ``at_ms``."""
        self._write(self._tracks[AGENT], data, at_ms)

    def clear_agent(self, at_ms: float) -> None:
        """Barge-in: agent audio from ``at_ms`` on was never played; drop it."""
        cut = max(self._index(at_ms), self._final)
        agent = self._tracks[AGENT]
        if cut < self._base + self._capacity:
            agent.clear(cut - self._base)
        agent.end = min(agent.end, cut)
        if agent.converter is not None:
            agent.converter.reset()

    def _index(self, at_ms: float) -> int:
        return round(at_ms * self.sample_rate / 1000)

    def _write(self, track: _Track, data: bytes, at_ms: float | None) -> None:
        if self._closed:
            raise ValueError("recorder is closed")
        if track.converter is not None:  # not G.711 at the recording rate: made PCM16
            data = track.converter.convert(data)
            if len(data) % 2:
                raise ValueError(f"PCM16 data has an odd byte count ({len(data)})")
        count = len(data) // track.width
        start = track.end if at_ms is None else self._index(at_ms)
        end = track.end = start + count
        if count and self._final <= start and end - self._base <= self._capacity:
            self._put(track, data, start, end)  # the usual frame: on time, inside the buffer
        else:
            self._put_pieces(track, data, start, end)

    def _put_pieces(self, track: _Track, data: bytes, start: int, end: int) -> None:
        """Store the samples of a chunk that is late, empty, or past or longer than the buffer."""
        first = start  # the index of data's first sample
        if start < self._final:
            skip = min(end, self._final) - start
            self._late += skip
            start += skip
        for at in range(start, end, self._capacity):
            stop = min(at + self._capacity, end)
            if stop - self._base > self._capacity:
                # A long gap or a channel running far ahead: make room, finalising the oldest.
                self._flush(max(self._final, stop - self._capacity))
            piece = data[(at - first) * track.width : (stop - first) * track.width]
            self._put(track, piece, at, stop)

    def _put(self, track: _Track, data: bytes, start: int, end: int) -> None:
        """Store samples ``[start, end)``, which are not final and fit in the buffer."""
        lo, hi = start - self._base, end - self._base
        track.store[lo * track.width : hi * track.width] = data
        if track.written is not None:
            track.written[lo:hi] = b"\x01" * (hi - lo)
        if end > self._high:
            self._high = end
            final = end - self._holdback
            if final > self._final:
                self._final = final
                if final - self._base >= self._flush_frames:
                    self._flush(final)

    def _flush(self, upto: int) -> None:
        """Write samples before ``upto`` to disk (silence past the buffer) and slide the buffer."""
        count = upto - self._base
        if count <= 0:
            return
        self._final = max(self._final, upto)
        from_buffer = min(count, self._capacity)
        for i in range(0, from_buffer, _BLOCK):
            self._emit(self._frames(i, min(i + _BLOCK, from_buffer)))
        for i in range(from_buffer, count, _BLOCK):
            self._emit(bytes(min(_BLOCK, count - i) * _FRAME))
        for track in self._tracks:
            track.drop(from_buffer)
        self._base = upto
        self._patch_header()

    def _frames(self, i: int, j: int) -> memoryview:
        """Buffer positions ``[i, j)`` as interleaved stereo PCM16."""
        frames = np.empty((j - i, _CHANNELS), dtype=np.int16)
        for channel, track in enumerate(self._tracks):
            frames[:, channel] = track.samples(i, j)
        return memoryview(frames).cast("B")

    def _emit(self, data: bytes | memoryview) -> None:
        room = _MAX_DATA - self._data_bytes
        if len(data) > room:
            if not self._full:
                logger.warning(
                    "recording %s reached the WAV size limit; the rest is dropped", self.path
                )
                self._full = True
            data = data[: room - room % _FRAME]
        self._file.write(data)
        self._data_bytes += len(data)

    def _patch_header(self) -> None:
        position = self._file.tell()
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + self._data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", self._data_bytes))
        self._file.seek(position)
        self._file.flush()

    def close(self, duration_ms: float | None = None) -> RecordingInfo:
        """Write everything, fix the header, close the file.

        ``duration_ms`` (the call length) pads the end with silence or cuts it; by default the
        file ends with the last sample of either channel.
        """
        if not self._closed:
            end = self._high if duration_ms is None else self._index(duration_ms)
            if end < self._base:
                self._data_bytes = min(self._data_bytes, end * _FRAME)
                self._file.truncate(_HEADER_SIZE + self._data_bytes)
                self._file.seek(0, os.SEEK_END)
            else:
                self._flush(end)
            self._patch_header()
            self._file.close()
            self._closed = True
            logger.info(
                "recording %s closed: %.1f s, %d late samples dropped",
                self.path,
                self.written_ms / 1000,
                self._late,
            )
        return RecordingInfo(
            self.path,
            self.sample_rate,
            self._data_bytes // _FRAME,
            self._late * 1000.0 / self.sample_rate,
        )

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_wav(path: str | os.PathLike[str]) -> int:
    """Fix the RIFF and data sizes of a WAV cut off mid-write; returns the audio frames kept.

    For files written by :class:`CallRecorder` (a 44-byte header, the data chunk last). A
    trailing partial sample frame is cut so players do not misalign the channels.
    """
    path = Path(path)
    with open(path, "r+b") as f:
        header = f.read(_HEADER_SIZE)
        if len(header) < _HEADER_SIZE or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a WAV file this recorder wrote")
        if header[36:40] != b"data":
            raise ValueError(f"{path} does not have its data chunk right after the format chunk")
        block_align = struct.unpack_from("<H", header, 32)[0] or _FRAME
        size = f.seek(0, os.SEEK_END)
        data = min(size - _HEADER_SIZE, _MAX_DATA)
        data -= data % block_align
        f.truncate(_HEADER_SIZE + data)
        f.seek(4)
        f.write(struct.pack("<I", 36 + data))
        f.seek(40)
        f.write(struct.pack("<I", data))
    logger.info("repaired %s: %d bytes of audio", path, data)
    return data // block_align
