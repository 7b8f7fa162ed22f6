"""Cut a streamed reply into sentences, so text-to-speech can start before the reply is finished.

A reply model streams its answer a few characters at a time; speaking each piece separately would
sound broken, and waiting for the whole answer would add seconds of silence. ``SentenceSplitter``
sits in between: ``feed()`` it the pieces as they arrive and it returns each sentence as soon as
the text after it shows that it is complete; ``flush()`` returns the rest when the reply ends.

A sentence ends after ``.``, ``?``, ``!`` or ``…`` (a run of them, and closing quotes or brackets
after them) followed by whitespace, and at every newline. A full stop does not end a sentence
after a common abbreviation (``Dr.``, ``e.g.``), an initial (``J. R. R. Tolkien``) or a lone number
that starts it (a list item: ``1. Open the app``); decimals and times (``3.5``, ``10.30``) have no
whitespace after their dot, so they are never cut.

Fragments shorter than ``min_chars`` are joined to the next sentence so the voice gets natural
phrases ("Yes." alone sounds clipped), except the reply's first sentence: it goes out at the end
of the ``feed()`` call that completed it, joined only with sentences already complete by then,
because the caller is waiting for it.
"""

from __future__ import annotations

import re

#: Ends of sentences; a run of them counts as one end ("?!", "...").
TERMINATORS = frozenset(".?!…")
#: What may follow a terminator and still belong to the sentence.
CLOSERS = frozenset("\"'”’»)]}")
#: Opening punctuation stripped before looking at the word in front of a full stop.
OPENERS = "\"'“‘«([{"
#: Lowercase, without their last dot: a full stop after these does not end the sentence.
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "prof",
        "st",
        "sr",
        "jr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "approx",
    }
)
#: Dotted initialisms with their last dot removed ("U.S", "J.R.R").
_INITIALISM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
#: Phrases shorter than this are joined to the next sentence.
MIN_CHARS = 20


class SentenceSplitter:
    """One reply's text in, sentences out. Not thread-safe; use one per reply."""

    def __init__(self, min_chars: int = MIN_CHARS):
        self.min_chars = min_chars
        self._buffer = ""
        # Where the next scan starts in _buffer: text before it holds no sentence end (except a
        # terminator at the very end, which is re-examined when more text comes).
        self._scan = 0
        # A complete but short fragment, waiting to be joined to the next sentence.
        self._pending = ""
        self._first_out = False

    def feed(self, text: str) -> list[str]:
        """Add the next piece of the reply; the sentences now complete (maybe none)."""
        self._buffer += text
        out: list[str] = []
        buffer = self._buffer
        start = 0
        i = self._scan
        end = len(buffer)
        while i < end:
            char = buffer[i]
            if char == "\n":
                self._add(buffer[start:i], out)
                start = i = i + 1
                continue
            if char not in TERMINATORS:
                i += 1
                continue
            j = i + 1
            while j < end and buffer[j] in TERMINATORS:
                j += 1
            while j < end and buffer[j] in CLOSERS:
                j += 1
            if j == end:
                break  # the next character decides: keep the terminator for the next feed
            if buffer[j].isspace() and not self._continues(buffer[start:i], buffer[i:j]):
                self._add(buffer[start:j], out)
                start = j
            i = j
        self._buffer = buffer[start:]
        self._scan = i - start
        if not self._first_out and not out and self._pending:
            # Nothing else completed the first sentence: do not keep the caller waiting for it.
            out.append(self._pending)
            self._pending = ""
        if out:
            self._first_out = True
        return out

    def flush(self) -> str:
        """The reply ended: what is left (possibly ""), and the splitter is ready for a new reply."""
        rest = " ".join(part for part in (self._pending, self._buffer.strip()) if part)
        self._buffer = self._pending = ""
        self._scan = 0
        self._first_out = False
        return rest

    def _add(self, sentence: str, out: list[str]) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        if self._pending:
            sentence = f"{self._pending} {sentence}"
            self._pending = ""
        if len(sentence) < self.min_chars:
            self._pending = sentence
        else:
            out.append(sentence)

    @staticmethod
    def _continues(before: str, terminator: str) -> bool:
        """Whether the full stop ending ``before`` belongs to a word, not to the sentence."""
        if terminator != ".":
            return False
        words = before.split()
        if not words:
            return False
        word = words[-1].lstrip(OPENERS)
        if len(words) == 1 and word.isdigit():
            return True  # a list item's number
        if len(word) == 1:
            return word.isalpha()  # an initial
        lowered = word.lower()
        return lowered in ABBREVIATIONS or _INITIALISM.fullmatch(word) is not None
