"""What the live monitor page starts from: the live calls and their transcript so far.

Two queries whatever the number of calls and lines: the calls (with their agents), then all their
transcript rows. The page gets the same shapes from ``views.monitor_state`` later, for calls it
learns about from the socket.
"""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse

from ..models import Call, TranscriptEntry
from ..services import LIVE_STATUSES

#: Calls shown at most (the oldest live ones first).
MAX_CALLS = 200


def monitor_state(call_ids=()) -> list[dict]:
    """The live calls, plus the calls ``call_ids`` whatever their status, with their lines."""
    calls = list(
        Call.objects.filter(Q(status__in=LIVE_STATUSES) | Q(pk__in=list(call_ids)))
        .select_related("agent")
        .order_by("created_at")[:MAX_CALLS]
    )
    lines: dict = {call.pk: [] for call in calls}
    for entry in TranscriptEntry.objects.filter(call__in=list(lines)).order_by("call", "seq"):
        lines[entry.call_id].append(line(entry))
    return [dict(call_summary(call), lines=lines[call.pk]) for call in calls]


def call_summary(call: Call) -> dict:
    return {
        "call_id": str(call.pk),
        "status": call.status,
        "status_label": call.get_status_display(),
        "live": call.status in LIVE_STATUSES,
        "end_reason": call.end_reason,
        "direction": call.get_direction_display(),
        "carrier": call.get_carrier_display(),
        "from_number": call.from_number,
        "to_number": call.to_number,
        "agent": call.agent.name if call.agent else "",
        "created_at": call.created_at.isoformat(),
        "url": reverse("admin:voiceagents_call_change", args=[call.pk]),
    }


def line(entry: TranscriptEntry) -> dict:
    """A transcript row in the shape of the calls' ``line`` events."""
    return {
        "seq": entry.seq,
        "role": entry.role,
        "text": entry.text,
        "offset_ms": entry.start_ms,
        "offset": offset_label(entry.start_ms),
        "interrupted": entry.interrupted,
    }


def offset_label(ms: int | None) -> str:
    """``m:ss`` into the call (as the page's script writes it), '' when unknown."""
    if ms is None:
        return ""
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"
