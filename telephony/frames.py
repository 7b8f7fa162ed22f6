"""Media-stream frames as typed values, and the codec a carrier writes to produce and send them.

A carrier's ``FrameCodec`` turns one text frame into one of the small frames below (``parse``)
and builds the frames we send (``media``, ``mark``, ``clear``). ``parse`` never raises: anything
it cannot use comes back as ``Malformed`` (counted and ignored by the consumer) or ``Ignored``
(valid, nothing to do). Outgoing frames are built by string concatenation, never ``json.dumps``:
payloads are base64 and the stream ids are checked in ``bind``, so nothing needs escaping; at
50 frames a second per call, ``json.dumps`` would be the most expensive thing on the path.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field

#: DTMF digits a carrier may report.
DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: Errors a reader may raise on a frame of the wrong shape; ``parse`` makes them ``Malformed``.
SHAPE_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    RecursionError,
)


@dataclass(slots=True)
class Start:
    """The stream's ``start``: who the call is and how the stream proves it.

    Empty strings stand for missing fields; the consumer refuses such a start. ``details`` is the
    carrier's own ``start`` object, for its hooks (formats, client state).
    """

    call_id: str
    token: str
    stream_id: str
    carrier_call_id: str
    details: dict = field(default_factory=dict)


@dataclass(slots=True)
class Media:
    """Caller audio: base64 ``payload`` as received and its decoded bytes.

    ``timestamp`` is the carrier's position of the audio in ms, if it gives one; ``number`` orders
    frames (Telnyx ``media.chunk``, or ``sequence`` when it has no chunk).

    A codec fills one ``Media`` per stream again for every media frame (``FrameCodec.media_frame``):
    50 allocations a second per call saved; it is valid until the next ``parse``.
    """

    payload: str
    audio: bytes
    timestamp: int | None = None
    number: int | None = None
    sequence: int | None = None


@dataclass(slots=True)
class Mark:
    """The carrier echoes a mark we sent: the audio before it has played."""

    name: str


@dataclass(slots=True)
class Connected:
    """The first frame of some carriers; Telnyx repeats its stream auth token in it."""

    token: str | None = None


@dataclass(slots=True)
class Dtmf:
    """The caller pressed a key (one of ``DTMF_DIGITS``)."""

    digit: str


@dataclass(slots=True)
class Error:
    """The carrier reports a problem with the stream (Telnyx ``error``)."""

    code: str
    message: str


@dataclass(slots=True)
class Ignored:
    """A valid frame that needs no action (``reason`` says which kind)."""

    reason: str


@dataclass(slots=True)
class Stop:
    """The carrier ends the stream (the call is over)."""


@dataclass(slots=True)
class Malformed:
    """A frame that cannot be used; ``why`` goes to the log."""

    why: str


Frame = Start | Media | Mark | Dtmf | Stop | Connected | Error | Ignored | Malformed

STOP = Stop()
#: Audio of another track than the caller's (counted by carriers that stream both).
OTHER_TRACK = Ignored("other_track")


def as_int(value) -> int | None:
    """An integer field carriers send as a string or a number; None if it is neither."""
    if type(value) is bool:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def as_str(value) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def decode_payload(payload) -> bytes:
    """The audio of a base64 ``payload``; raises ``binascii.Error``/``TypeError`` if it is not."""
    return binascii.a2b_base64(payload, strict_mode=True)


def dtmf(digit) -> Dtmf | Malformed:
    if type(digit) is int and 0 <= digit <= 9:
        digit = str(digit)
    if isinstance(digit, str) and digit in DTMF_DIGITS:
        return Dtmf(digit)
    return Malformed("dtmf without a digit")


class FrameCodec:
    """One carrier's frame format. Subclasses fill ``readers`` and build the outgoing frames.

    ``readers`` maps an ``event`` to the name of a method taking the decoded JSON object and
    returning a frame; ``ignored_events`` are valid events that need no action. A codec instance
    belongs to one stream (``bind`` may keep the stream's ids for the frames it builds).
    """

    readers: dict[str, str] = {}
    ignored_events: frozenset[str] = frozenset()

    def __init__(self) -> None:
        # Bound once per stream, so each frame costs one dict lookup.
        self._readers = {event: getattr(self, name) for event, name in self.readers.items()}
        #: The stream's one media frame, refilled by the media reader (see ``Media``).
        self.media_frame = Media("", b"")

    def parse(self, text: str) -> Frame:
        """One text frame as a typed frame; never raises (at most one ``json.loads``)."""
        try:
            obj = json.loads(text)
            event = obj["event"]
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            return Malformed("not a JSON object with an event")
        if type(event) is not str:
            return Malformed("event is not a string")
        reader = self._readers.get(event)
        if reader is None:
            if event in self.ignored_events:
                return Ignored(event)
            return Malformed(f"unknown event {event[:40]!r}")
        try:
            return reader(obj)
        except SHAPE_ERRORS as err:
            return Malformed(f"{event} frame of the wrong shape ({type(err).__name__})")

    def bind(self, start: Start) -> str | None:
        """Keep what the stream's outgoing frames need; return why ``start`` is unusable, if so."""
        return None

    # -- readers shared by the carriers ------------------------------------------------------

    def read_mark(self, obj: dict) -> Mark | Malformed:
        name = obj["mark"]["name"]
        return Mark(name) if isinstance(name, str) else Malformed("mark without a name")

    def read_stop(self, obj: dict) -> Stop:
        return STOP

    # -- frames to the carrier ------------------------------------------------------------------

    def media(self, payload: str) -> str:
        raise NotImplementedError

    def mark(self, name: str) -> str:
        raise NotImplementedError

    def clear(self) -> str:
        raise NotImplementedError


def json_safe(name: str) -> str:
    """``name`` ready to sit between JSON quotes (mark names are ours: usually unchanged)."""
    if '"' in name or "\\" in name or not name.isprintable():
        return json.dumps(name)[1:-1]
    return name
