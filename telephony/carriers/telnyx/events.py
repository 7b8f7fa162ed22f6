"""Telnyx webhook events and ``client_state``, read leniently.

The envelope: docs/carriers/telnyx.md#webhook-envelope.

Every Call Control webhook is ``{"data": {"event_type", "id", "occurred_at", "payload"}}``. We keep
the raw payload on the event for fields we do not map, and tolerate missing ones: Telnyx adds
fields over time and documents some of them only loosely.

``client_state`` is our own base64 JSON, set on the commands we send and echoed by Telnyx in later
webhooks and in the media stream's ``start`` frame. It says which ``Call`` a Telnyx call is, which
codec its stream uses, and whether it is being turned away with an apology.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voiceagents.models import CallStatus

#: What the answered call is for: an agent conversation, or the apology before a hang-up.
MODE_AGENT = "agent"
MODE_APOLOGY = "apology"

#: Longest ``client_state`` we read back (Telnyx echoes what we set; ours are ~100 characters).
MAX_CLIENT_STATE_CHARS = 2048


class MalformedEvent(ValueError):
    """The body is not a Telnyx webhook envelope."""


@dataclass(frozen=True)
class ClientState:
    """Our state carried through Telnyx: the call it belongs to and how it is handled."""

    call_id: str = ""
    mode: str = MODE_AGENT
    #: The stream codec chosen for the call (``L16`` or ``PCMU``), so the consumer needs no query.
    codec: str = ""

    def encode(self) -> str:
        data = {"call_id": self.call_id, "mode": self.mode}
        if self.codec:
            data["codec"] = self.codec
        text = json.dumps(data, separators=(",", ":"))
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    @classmethod
    def decode(cls, value: Any) -> ClientState | None:
        """The state in ``value``, or None when it is absent or not ours."""
        if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_STATE_CHARS:
            return None
        try:
            data = json.loads(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("call_id"), str):
            return None
        return cls(
            call_id=data["call_id"],
            mode=str(data.get("mode") or MODE_AGENT),
            codec=str(data.get("codec") or ""),
        )


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from Telnyx's ISO 8601 text (``…Z``); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


@dataclass(frozen=True)
class TelnyxEvent:
    """One Call Control webhook, with the payload fields we act on."""

    event_id: str
    event_type: str
    occurred_at: datetime | None
    payload: dict = field(repr=False)

    @classmethod
    def from_body(cls, body: bytes) -> TelnyxEvent:
        try:
            envelope = json.loads(body)
            data = envelope["data"]
            event_id, event_type = data["id"], data["event_type"]
        except (ValueError, TypeError, KeyError) as err:
            raise MalformedEvent("not a Telnyx webhook envelope") from err
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_id:
            raise MalformedEvent("data.id and data.event_type must be strings")
        payload = data.get("payload")
        return cls(
            event_id=event_id[:128],
            event_type=event_type[:64],
            occurred_at=parse_time(data.get("occurred_at")),
            payload=payload if isinstance(payload, dict) else {},
        )

    def get(self, name: str) -> str:
        """A payload field as a string ('' when absent or null)."""
        value = self.payload.get(name)
        return "" if value is None else str(value)

    @property
    def call_control_id(self) -> str:
        return self.get("call_control_id")[:128]

    @property
    def client_state(self) -> ClientState | None:
        return ClientState.decode(self.payload.get("client_state"))


# -- call.hangup ------------------------------------------------------------------------------

#: Telnyx ``hangup_cause`` → our ``Call.end_reason``. ``normal_clearing`` depends on who hung up.
END_REASONS = {
    "originator_cancel": "caller_cancelled",
    "user_busy": "busy",
    "no_answer": "no_answer",
    "timeout": "timeout",
    "time_limit": "time_limit",
    "call_rejected": "rejected",
    "not_found": "not_found",
    "unspecified": "unspecified",
}
#: ``end_reason`` for a ``hangup_cause`` we do not map yet.
UNKNOWN_END_REASON = "other"

#: Final status of a call that was never answered, by ``hangup_cause``; anything else: failed.
UNANSWERED_STATUS = {
    "user_busy": CallStatus.BUSY,
    "no_answer": CallStatus.NO_ANSWER,
    "timeout": CallStatus.NO_ANSWER,
    "originator_cancel": CallStatus.CANCELED,
    "normal_clearing": CallStatus.CANCELED,
}


def local_party(direction: str) -> str:
    """``hangup_source`` naming our side: the callee of incoming calls, the caller of ours."""
    return "caller" if direction == "outbound" else "callee"


def end_reason(cause: str, source: str, direction: str) -> str:
    """Our ``end_reason`` for a Telnyx ``call.hangup``."""
    if cause == "normal_clearing":
        if source == local_party(direction):
            return "agent_hangup"
        if source in ("caller", "callee"):
            return "caller_hangup" if direction != "outbound" else "callee_hangup"
        return "hangup"
    return END_REASONS.get(cause, UNKNOWN_END_REASON)


def final_status(cause: str, answered: bool) -> str:
    """Our final ``CallStatus`` for a hang-up with ``cause``."""
    if answered:
        return CallStatus.COMPLETED
    return UNANSWERED_STATUS.get(cause, CallStatus.FAILED)
