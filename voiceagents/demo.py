"""The ``demo`` reply handler: the offline demo agent's answers, with no LLM and no network.

It answers "what can you do", tells the time, names the key pressed on the keypad and otherwise
repeats what it heard, which is what a first test of a call needs: proof that the caller's words
arrived and that the agent's voice comes back. ``make demo`` creates the "Offline demo" agent
with it; any pipeline agent can choose it in the admin.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone

from .handlers import reply_handler

CAPABILITIES = (
    "I am the offline demo agent. I run on this computer, with no network and no keys. "
    "I repeat what you say, tell you the time, and name the keys you press on your keypad."
)
NOT_HEARD = "Sorry, I did not catch that. Please say it again."

_TIME = re.compile(r"\b(time|clock)\b")
_CAPABILITIES = re.compile(r"\b(what can you do|what do you do|help)\b")


def spoken_time(now: datetime) -> str:
    """``now`` as a sentence, in the 12-hour form speech engines read well: "It is 3:05 PM."."""
    hour = now.hour % 12 or 12
    zone = now.tzname()
    return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}" + (
        f" {zone}." if zone else "."
    )


def answer(event: dict, now: datetime | None = None) -> str:
    """The reply to one caller turn (``event`` as documented in docs/stages/reply_handlers.md)."""
    if event.get("type") == "dtmf":
        return f"You pressed {event.get('digit', '')}."
    text = " ".join(str(event.get("text", "")).split())
    words = re.sub(r"[^\w\s']", " ", text.lower())
    words = " ".join(words.split())
    if not words:
        return NOT_HEARD
    if _CAPABILITIES.search(words):
        return CAPABILITIES
    if _TIME.search(words):
        return spoken_time(now or timezone.localtime())
    return f"You said: {text.rstrip('.!?,;: ')}."


@reply_handler("demo")
def demo(event: dict) -> str:
    """The registered handler: :func:`answer` at the current local time."""
    return answer(event)
