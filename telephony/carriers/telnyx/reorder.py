"""Putting inbound media frames back in order: Telnyx does not guarantee it
(docs/carriers/telnyx.md#media-stream-frames).

Frames are numbered (``media.chunk``, one per media frame, else the stream-wide
``sequence_number``). :class:`Reorder` releases them in number order. A frame that arrives early
is held until the gap before it fills; once more than ``window`` frames are held, the missing one
is given up on. So a lost frame costs at most ``window`` frames of delay, and in-order frames (the
usual case) go straight through. A frame whose place has passed, or a duplicate, is dropped:
it would only play as an echo.

With ``window=0`` nothing is held: gaps are skipped at once and only late frames are dropped.
That fits ``sequence_number``, which also counts the stream's other frames (marks, DTMF), so gaps
in it are normal.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Reorder(Generic[T]):
    """Releases numbered items in order; see the module docstring."""

    def __init__(self, window: int = 2) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        #: The number due next (None before the first item).
        self.expected: int | None = None
        self._held: dict[int, T] = {}
        #: Items dropped because their place had passed (late or repeated).
        self.late = 0
        #: Numbers skipped because their item never came within the window.
        self.missing = 0
        #: Items that arrived early and were held for a while.
        self.held = 0

    def push(self, number: int, item: T) -> list[tuple[int, T]]:
        """Add one item; return the ``(number, item)`` pairs now due, in order."""
        if self.expected is None:
            self.expected = number
        if number < self.expected or number in self._held:
            self.late += 1
            return []
        out: list[tuple[int, T]] = []
        if number == self.expected and not self._held:
            # The usual case: in order, nothing waiting.
            self.expected += 1
            out.append((number, item))
            return out
        if number != self.expected:
            self.held += 1
        self._held[number] = item
        self._release(out)
        while len(self._held) > self.window:
            first = min(self._held)
            self.missing += first - self.expected
            self.expected = first
            self._release(out)
        return out

    def _release(self, out: list[tuple[int, T]]) -> None:
        while self.expected in self._held:
            out.append((self.expected, self._held.pop(self.expected)))
            self.expected += 1
