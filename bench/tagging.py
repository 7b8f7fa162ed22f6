"""Tagged μ-law frames: each bench frame carries its own index in its first six bytes.

Latency is matched by cumulative audio duration (which survives any transcoding, see
``bench.analysis``). On a pass-through leg, such as Twilio μ-law ↔ OpenAI ``audio/pcmu``, the
bytes arrive untouched, so each 20 ms frame also names itself: two magic bytes and a 32-bit
index. That tells exactly which frame was lost or duplicated, and keeps latency matching exact
when frames go missing (a lost frame shifts every later cumulative offset).

Base64 works in 3-byte groups and the tag is 6 bytes, so a frame's base64 is the tag's 8
characters followed by the filler's precomputed base64: one tiny encode per frame.
"""

from __future__ import annotations

import base64
import binascii

MAGIC = b"\xa5\x5a"
TAG_BYTES = 6
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
#: Speech-like μ-law filler (any byte value is valid μ-law); never starts a tag.
FILLER = bytes((0x30 + (i * 37) % 0x4F) for i in range(FRAME_BYTES - TAG_BYTES))
FILLER_B64 = base64.b64encode(FILLER).decode()
#: Untagged audio, e.g. the greeting (μ-law silence).
SILENCE = b"\xff" * FRAME_BYTES


def tag_b64(index: int) -> str:
    return base64.b64encode(MAGIC + index.to_bytes(4, "big")).decode()


def frame_b64(index: int) -> str:
    """Base64 of one tagged 160-byte frame."""
    return base64.b64encode(MAGIC + index.to_bytes(4, "big")).decode() + FILLER_B64


def tagged(index: int, size: int = FRAME_BYTES) -> bytes:
    """A tagged chunk of ``size`` bytes (untagged silence when too short for a tag)."""
    if size < TAG_BYTES:
        return b"\xff" * size
    body = (FILLER * (size // len(FILLER) + 1))[: size - TAG_BYTES]
    return MAGIC + index.to_bytes(4, "big") + body


def read_tag(payload_b64: bytes | str) -> int:
    """The index in a frame's base64 payload, or -1 when it carries no tag."""
    try:
        head = binascii.a2b_base64(payload_b64[:8])
    except (binascii.Error, ValueError):
        return -1
    if head[:2] != MAGIC or len(head) < TAG_BYTES:
        return -1
    return int.from_bytes(head[2:6], "big")


def b64_len(payload_b64: bytes | str) -> int:
    """Decoded length of a base64 string, without decoding it."""
    n = len(payload_b64)
    if not n:
        return 0
    pad = 2 if payload_b64[-2:] in ("==", b"==") else 1 if payload_b64[-1:] in ("=", b"=") else 0
    return n // 4 * 3 - pad
