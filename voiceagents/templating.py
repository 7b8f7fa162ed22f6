"""Fill ``{name}`` placeholders in prompts and first messages.

Only placeholders whose name is a known variable are replaced. Everything else, including JSON
examples with braces inside a system prompt, is left exactly as written, unlike ``str.format``.

Values the caller controls (caller ID, SIP headers, custom parameters) are ``CallerValue``s:
sanitised when made (a number keeps ``+`` and digits only; text loses control characters, braces
and markup, and is cut short) and inserted into a prompt in double quotes, so that a caller ID
such as ``+1415{company}<b>x`` reaches the model as data, never as instructions or markup.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Longest caller-controlled text kept (a display name, a SIP header value).
CALLER_TEXT_MAX = 64
#: E.164: at most 15 digits.
NUMBER_DIGITS_MAX = 15
#: A caller ID that starts like a number is taken for one: its digits are kept, nothing else.
_NUMBER_LIKE = re.compile(r"^\s*\+?\d")
#: Characters that open placeholders or markup in any template language or prompt format.
_STRIPPED = set('{}<>[]`"\\')


class CallerValue(str):
    """A sanitised value the caller chose; ``fill_placeholders`` inserts it quoted.

    Make one with ``caller_number()`` or ``caller_text()``.
    """

    def quoted(self) -> str:
        return f'"{self}"'


def caller_number(value: str | None) -> CallerValue:
    """A caller-supplied phone number as E.164: ``+`` and its digits, nothing else.

    Anything that does not start like a number ("anonymous", a SIP URI) is kept as sanitised text.
    """
    value = value or ""
    if not _NUMBER_LIKE.match(value):
        return caller_text(value)
    digits = re.sub(r"\D", "", value)[:NUMBER_DIGITS_MAX]
    return CallerValue(f"+{digits}" if digits else "")


def caller_text(value: str | None, max_length: int = CALLER_TEXT_MAX) -> CallerValue:
    """Caller-supplied text without control or format characters, braces, quotes and markup
    brackets, its whitespace collapsed, at most ``max_length`` characters."""
    kept = (
        " " if unicodedata.category(ch)[0] in "CZ" else ch
        for ch in str(value or "")
        if ch not in _STRIPPED
    )
    return CallerValue(" ".join("".join(kept).split())[:max_length].strip())


def fill_placeholders(text: str, variables: Mapping[str, object]) -> str:
    if not text or not variables:
        return text or ""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            return match.group(0)
        value = variables[name]
        return value.quoted() if isinstance(value, CallerValue) else str(value)

    return PLACEHOLDER_RE.sub(replace, text)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER_RE.findall(text or ""))
