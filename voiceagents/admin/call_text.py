"""Calls in the operator's words: clock times, end reasons and timeline events as sentences."""

from __future__ import annotations

import json
from datetime import timedelta

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import CallEventKind, CallStatus
from ..models.calls import clock

#: ``Call.end_reason`` values (written by the call session, the carriers and the maintenance
#: tasks) as an operator would say them. A reason missing here is shown with spaces for
#: underscores, so a new one is still readable.
END_REASONS = {
    "caller_hangup": gettext_lazy("caller hung up"),
    "callee_hangup": gettext_lazy("callee hung up"),
    "agent_hangup": gettext_lazy("agent hung up"),
    "operator_hangup": gettext_lazy("hung up from the admin"),
    "transferred": gettext_lazy("transferred"),
    "hangup": gettext_lazy("hung up"),
    "max_duration": gettext_lazy("time limit reached"),
    "provider_error": gettext_lazy("voice provider error"),
    "provider_closed": gettext_lazy("voice provider disconnected"),
    "provider_ended": gettext_lazy("agent ended the conversation"),
    "internal_error": gettext_lazy("internal error"),
    "stale": gettext_lazy("never ended properly"),
    "lost": gettext_lazy("server stopped during the call"),
    "stream_started": gettext_lazy("media stream started"),
    "stream_stopped": gettext_lazy("media stream stopped"),
    "stream_closed": gettext_lazy("media stream closed"),
    "stream_failed": gettext_lazy("media stream failed"),
    "no_media_stream": gettext_lazy("ended before the media stream started"),
    "carrier_failed": gettext_lazy("carrier could not connect the call"),
    "answered": gettext_lazy("answered"),
    "caller_cancelled": gettext_lazy("caller gave up"),
    "busy": gettext_lazy("line busy"),
    "no_answer": gettext_lazy("no answer"),
    "timeout": gettext_lazy("no answer in time"),
    "time_limit": gettext_lazy("carrier's time limit"),
    "rejected": gettext_lazy("rejected"),
    "not_found": gettext_lazy("number not found"),
    "unspecified": gettext_lazy("no reason given"),
    "other": gettext_lazy("other reason"),
    "unknown_number": gettext_lazy("number not set up here"),
    "account_mismatch": gettext_lazy("number belongs to another carrier account"),
    "number_disabled": gettext_lazy("number disabled"),
    "no_agent": gettext_lazy("no agent on the number"),
    "agent_disabled": gettext_lazy("agent disabled"),
    "voicemail": gettext_lazy("voicemail left"),
    "machine_hangup": gettext_lazy("answering machine: hung up"),
    "dial_failed": gettext_lazy("the carrier refused the call"),
}


def clock_duration(duration: timedelta | None) -> str:
    """A ``DurationField`` value as :func:`clock` shows it; an em dash when there is none."""
    if duration is None:
        return "—"
    return clock(duration.total_seconds() * 1000)


def seconds(ms: float | None) -> str:
    """A short time in seconds with one decimal ("0.8 s"), for latencies."""
    if ms is None:
        return ""
    return _("%(seconds)s s") % {"seconds": f"{ms / 1000:.1f}"}


def end_reason_text(reason: str) -> str:
    if not reason:
        return ""
    return str(END_REASONS.get(reason, reason.replace("_", " ")))


def status_text(status: str) -> str:
    try:
        return str(CallStatus(status).label)
    except ValueError:
        return status.replace("_", " ")


def status_with_reason(call) -> str:
    """ "completed · caller hung up": the status, and why the call ended when known."""
    reason = end_reason_text(call.end_reason)
    status = status_text(call.status)
    return f"{status} · {reason}" if reason else status


# -- timeline --------------------------------------------------------------------------------


def event_sentence(kind: str, data: dict) -> tuple[str, dict]:
    """What a ``CallEvent`` says, as a sentence, and the data the sentence leaves out."""
    data = dict(data or {})
    describe = _DESCRIBERS.get(kind, _other)
    return describe(data), data


def leftover_text(data: dict) -> str:
    """Data no sentence covers, listed plainly ("sequence: 3, sip response code: 200")."""
    return ", ".join(
        f"{key.replace('_', ' ')}: {_plain(value)}"
        for key, value in data.items()
        if value not in (None, "", [], {})
    )


def _plain(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _status(data: dict) -> str:
    before = data.pop("from", None) or data.pop("previous", None)
    after = data.pop("to", None) or data.pop("status", None)
    reason = data.pop("reason", None) or data.pop("end_reason", None)
    if after and before and before != after:
        text = _("Status changed from %(before)s to %(after)s") % {
            "before": status_text(before),
            "after": status_text(after),
        }
    elif after:
        text = _("Status: %(status)s") % {"status": status_text(after)}
    else:
        text = _("Status changed")
    if reason:
        text += f" ({end_reason_text(reason)})"
    return text


def _dtmf(data: dict) -> str:
    return _("Caller pressed %(digit)s") % {"digit": data.pop("digit", "?")}


def _barge_in(data: dict) -> str:
    heard = data.pop("audio_end_ms", None)
    data.pop("turn_id", None)
    truncated = data.pop("truncated", None)
    if heard is None:
        text = _("The caller cut in on the agent")
    else:
        text = _("The caller cut in after hearing %(heard)s of the agent's reply") % {
            "heard": seconds(heard)
        }
    if truncated is False:
        text += _("; the voice provider may still remember the unheard rest")
    return text


def _false_interruption(data: dict) -> str:
    heard = data.pop("audio_end_ms", None)
    data.pop("turn_id", None)
    data.pop("after_ms", None)
    resumed = data.pop("resumed", False)
    text = _("The cut-in after %(heard)s was only a noise") % {"heard": seconds(heard or 0)}
    if resumed:
        text += _("; the agent picked up where it was cut")
    return text


def _tool_call(data: dict) -> str:
    name = data.pop("name", "?")
    data.pop("call_id", None)
    error = data.pop("error", None)
    reason = data.pop("reason", None)
    if error == "unknown_tool":
        return _("The agent asked for a tool that does not exist: %(name)s") % {"name": name}
    if error == "bad_arguments":
        return _("The agent called %(name)s with unreadable arguments") % {"name": name}
    text = _("The agent used %(name)s") % {"name": name}
    if error:
        text += _(" (failed: %(error)s)") % {"error": error}
    if reason:
        text += f": {reason}"
    return text


def _transfer(data: dict) -> str:
    number = data.pop("number", "") or _("no number")
    data.pop("call_id", None)
    allowed = data.pop("allowed", None)
    done = data.pop("done", None)
    error = data.pop("error", None)
    if data.pop("by", None) == "operator":
        text = _("An operator asked to transfer the call to %(number)s") % {"number": number}
        if allowed is False:
            return text + _(": refused, not a number transfers may go to")
    else:
        text = _("The agent asked to transfer the call to %(number)s") % {"number": number}
        if allowed is False:
            return text + _(": refused, not on the agent's transfer list")
    if done is False:
        text += _(": not carried out")
        if error:
            text += f" ({error})"
    elif done:
        text += _(": transferred")
    return text


def _error(data: dict) -> str:
    message = (
        data.pop("message", None)
        or data.pop("error", None)
        or data.pop("failure_reason", None)
        or _("no details")
    )
    code = data.pop("code", None)
    source = data.pop("source", None)
    text = _("Error: %(message)s") % {"message": message}
    if code:
        text += f" ({code})"
    if source:
        text += _(" reported by %(source)s") % {"source": source}
    return text


def _webhook(data: dict) -> str:
    outcome = data.pop("outcome", None)
    attempt = data.pop("attempt", None)
    error = data.pop("error", None)
    final = data.pop("final", None)
    status = data.pop("status", None)
    if outcome == "queued":
        return _("The call webhook was queued")
    if outcome == "delivered":
        text = _("The call webhook was delivered (try %(attempt)s, answer %(status)s)") % {
            "attempt": attempt,
            "status": status,
        }
        ms = data.pop("ms", None)
        return text + (f" in {seconds(ms)}" if ms is not None else "")
    if outcome == "refused":
        return _("The call webhook was not sent: %(error)s") % {"error": error}
    text = _("The call webhook failed (try %(attempt)s): %(error)s") % {
        "attempt": attempt,
        "error": error,
    }
    return text + (_("; no more tries") if final else _("; it will be tried again"))


#: Carrier events kept on the timeline as "other".
_CARRIER_EVENTS = {
    "streaming.started": gettext_lazy("The carrier started streaming the call's audio"),
    "streaming.stopped": gettext_lazy("The carrier stopped streaming the call's audio"),
    "call.hangup": gettext_lazy("The carrier reported the hang-up"),
}


_AMD_VERDICTS = {
    "human": gettext_lazy("a person answered"),
    "machine": gettext_lazy("a machine answered"),
    "unknown": gettext_lazy("no clear answer"),
    "timeout": gettext_lazy("no verdict in time: the agent spoke"),
}


def _other(data: dict) -> str:
    if data.get("action") == "say":
        data.pop("action")
        data.pop("by", None)
        return _("An operator had the agent say: %(text)s") % {"text": data.pop("text", "")}
    if "amd" in data:
        # An outbound call's answering-machine detection (voiceagents.outbound, call.amd).
        data.pop("carrier_event", None)
        verdict = str(data.pop("verdict", ""))
        answered_by = data.pop("amd")
        return _("Answering-machine detection: %(verdict)s (%(answered_by)s)") % {
            "verdict": _AMD_VERDICTS.get(verdict, verdict),
            "answered_by": answered_by,
        }
    event = data.pop("carrier_event", None)
    if event:
        return str(_CARRIER_EVENTS.get(event, _("Carrier event %(event)s") % {"event": event}))
    return _("Event")


_DESCRIBERS = {
    CallEventKind.STATUS: _status,
    CallEventKind.DTMF: _dtmf,
    CallEventKind.BARGE_IN: _barge_in,
    CallEventKind.FALSE_INTERRUPTION: _false_interruption,
    CallEventKind.TOOL_CALL: _tool_call,
    CallEventKind.TRANSFER: _transfer,
    CallEventKind.ERROR: _error,
    CallEventKind.WEBHOOK: _webhook,
    CallEventKind.OTHER: _other,
}
