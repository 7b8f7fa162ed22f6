"""A call's ``metrics`` as labelled figures: what each key means, with its unit.

The keys are those ``voiceagents.call.metrics.CallMetrics.report`` writes, plus what carriers and
providers add: the carrier's counters (``malformed_frames``, Telnyx's ``telnyx`` dict) and the
pipeline's per-turn timings (``pipeline_turns``). Keys this module does not know are still shown,
plainly, under "Other figures". The quality figures (latencies, barge-ins, network estimates)
have a section of their own (``call_quality``) and are left out here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

from ..call.metrics import percentile
from .call_quality import QUALITY_KEYS
from .call_text import clock, seconds

__all__ = ["metric_groups", "percentile"]


@dataclass
class Figure:
    label: str
    value: str
    #: Why the figure matters, shown on hover.
    hint: str = ""


@dataclass
class FigureGroup:
    title: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class PipelineTurns:
    """The pipeline's timings of each reply, one row per turn, in seconds."""

    columns: list[str]
    rows: list[list[str]]


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else _plain(value)


def _ms(value) -> str:
    return seconds(value) if isinstance(value, int | float) else _plain(value)


def _plain(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


#: Single figures: key → (group, label, how to show it, hint).
_RESPONSIVENESS = _("Voice provider timings")
_AUDIO = _("Audio")
_CONVERSATION = _("Conversation")
_CARRIER = _("Carrier")
_KNOWN = {
    "provider_connect_ms": (
        _RESPONSIVENESS,
        _("Voice provider connected in"),
        _ms,
        "",
    ),
    "duration_ms": (_AUDIO, _("Media stream length"), lambda v: clock(v), ""),
    "frames_in": (_AUDIO, _("Caller audio frames received"), _count, ""),
    "frames_out": (_AUDIO, _("Agent audio frames sent"), _count, ""),
    "caller_audio_buffered_frames": (
        _AUDIO,
        _("Caller frames held until the voice provider was ready"),
        _count,
        "",
    ),
    "caller_audio_dropped_frames": (
        _AUDIO,
        _("Caller frames dropped"),
        _count,
        _("Caller audio the voice provider never got."),
    ),
    "agent_audio_dropped_chunks": (
        _AUDIO,
        _("Agent audio chunks dropped"),
        _count,
        _("Agent audio that arrived for a reply the caller had already cut off."),
    ),
    "echo_frames": (
        _AUDIO,
        _("Echo frames suppressed"),
        _count,
        _("Caller frames that only echoed the agent's own voice (a speakerphone)."),
    ),
    "dtmf": (_CONVERSATION, _("Keys pressed"), _count, ""),
    "provider_errors": (_CONVERSATION, _("Voice provider errors"), _count, ""),
    "marks_sent": (_CARRIER, _("Playback marks sent"), _count, ""),
    "marks_acked": (
        _CARRIER,
        _("Playback marks confirmed"),
        _count,
        _("Marks the carrier echoed once it had played the audio before them."),
    ),
    "malformed_frames": (_CARRIER, _("Malformed stream messages"), _count, ""),
}
#: Telnyx's stream counters (the ``telnyx`` key).
_TELNYX = {
    "late_frames": _("Telnyx frames late"),
    "missing_frames": _("Telnyx frames missing"),
    "reordered_frames": _("Telnyx frames reordered"),
    "other_track_frames": _("Telnyx frames of the other track"),
    "stream_errors": _("Telnyx stream errors"),
    "mark_fallbacks": _("Telnyx marks estimated"),
}
#: The pipeline's per-turn timings, in the order a reply goes through them.
_PIPELINE_COLUMNS = {
    "transcript_ms": _("speech end → transcript"),
    "reply_first_text_ms": _("transcript → first reply text"),
    "tts_first_byte_ms": _("speech synthesis first byte"),
    "first_audio_ms": _("speech end → first audio"),
}


def metric_groups(metrics: dict) -> tuple[list[FigureGroup], PipelineTurns | None]:
    """The figures of ``metrics`` in groups (empty groups left out), and the pipeline's turns."""
    groups = {
        title: FigureGroup(str(title))
        for title in (_RESPONSIVENESS, _AUDIO, _CONVERSATION, _CARRIER)
    }
    other = FigureGroup(str(_("Other figures")))
    pipeline = None
    for key, value in (metrics or {}).items():
        if key in QUALITY_KEYS:
            continue  # the "Quality" section shows these (call_quality.py)
        if key in _KNOWN:
            group, label, show, hint = _KNOWN[key]
            groups[group].figures.append(Figure(str(label), show(value), str(hint)))
        elif key == "telnyx" and isinstance(value, dict):
            for name, count in value.items():
                label = _TELNYX.get(name, f"Telnyx {name.replace('_', ' ')}")
                groups[_CARRIER].figures.append(Figure(str(label), _count(count)))
        elif key == "pipeline_turns" and isinstance(value, list):
            pipeline = _pipeline_turns(value)
            groups[_RESPONSIVENESS].figures.extend(_pipeline_summary(value))
        else:
            other.figures.append(Figure(key, _plain(value)))
    ordered = [*groups.values(), other]
    return [group for group in ordered if group.figures], pipeline


def _series(label: str, values: list, hint: str) -> list[Figure]:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    if p50 is None:
        return [Figure(label, _plain(values), hint)]
    return [
        Figure(
            str(_("%(figure)s, median (p50)") % {"figure": label}),
            seconds(p50),
            hint,
        ),
        Figure(
            str(_("%(figure)s, p95") % {"figure": label}),
            seconds(p95),
            str(_("%(count)d measured") % {"count": len(values)}),
        ),
    ]


def _pipeline_summary(turns: list) -> list[Figure]:
    firsts = [t.get("first_audio_ms") for t in turns if isinstance(t, dict)]
    firsts = [v for v in firsts if isinstance(v, int | float)]
    if not firsts:
        return []
    return _series(str(_("Pipeline: speech end to first audio")), firsts, "")


def _pipeline_turns(turns: list) -> PipelineTurns:
    keys = list(_PIPELINE_COLUMNS)
    for turn in turns:
        if isinstance(turn, dict):
            keys += [k for k in turn if k not in keys]
    columns = [str(_PIPELINE_COLUMNS.get(k, k.replace("_", " "))) for k in keys]
    rows = [
        [_ms(turn.get(k)) if turn.get(k) is not None else "—" for k in keys]
        for turn in turns
        if isinstance(turn, dict)
    ]
    return PipelineTurns(columns, rows)
