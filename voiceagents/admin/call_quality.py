"""The call page's "Quality" section: how the conversation felt, in figures with their meaning.

Reads what ``voiceagents.call.metrics.CallMetrics.report`` stores in ``Call.metrics``: the greeting
latency, the response latency with its percentiles, barge-ins with what the caller heard of each
cut reply, false interruptions, and playback's estimates of the network delay and jitter buffer.
Calls recorded before a figure existed show it blank ("not measured"), never as zero: the greeting
latency was stored as ``first_agent_audio_ms``, and the percentiles are worked out from the list
when they were not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..call.metrics import percentile
from .call_text import clock, seconds

#: Every key this section shows; the "Figures" section leaves them to it.
QUALITY_KEYS = frozenset(
    {
        "greeting_latency_ms",
        "first_agent_audio_ms",
        "response_latency_ms",
        "response_latency_ms_avg",
        "response_latency_ms_p50",
        "response_latency_ms_p90",
        "response_latency_ms_p95",
        "response_latency_ms_max",
        "barge_in_clear_ms",
        "barge_ins",
        "false_interruptions",
        "barge_in_cuts",
        "network_delay_ms",
        "jitter_ms",
    }
)


@dataclass
class QualityFigure:
    key: str
    label: str
    #: The figure with its unit; empty when the call did not measure it.
    value: str
    #: What it means, in an operator's words (shown beside it).
    meaning: str


@dataclass
class BargeInRow:
    number: int
    when: str
    heard: str
    generated: str
    #: How much of what was generated the caller heard ("32 %").
    share: str
    #: The barge-in turned out to be noise and the agent went on.
    false: bool = False


@dataclass
class Quality:
    groups: list[tuple[str, list[QualityFigure]]] = field(default_factory=list)
    barge_ins: list[BargeInRow] = field(default_factory=list)


def _number(value) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _time(value) -> str:
    """A latency in seconds ("0.8 s"); empty when there is none."""
    value = _number(value)
    return "" if value is None else seconds(value)


def _precise(value) -> str:
    """Heard and generated audio to the hundredth of a second ("0.64 s"): a barge-in's
    accounting is meant to be right within tens of ms, which one decimal would hide."""
    value = _number(value)
    return "" if value is None else _("%(seconds)s s") % {"seconds": f"{value / 1000:.2f}"}


def _short(value) -> str:
    """A short time in ms ("45 ms"): network figures are tens of ms, seconds would read 0.0."""
    value = _number(value)
    if value is None:
        return ""
    # Below 10 ms (a barge-in's reaction) a tenth still says something.
    return _("%(ms)s ms") % {"ms": f"{value:.1f}" if abs(value) < 10 else f"{value:,.0f}"}


def _count(value) -> str:
    value = _number(value)
    return "" if value is None else f"{value:,.0f}"


_LATENCIES = (
    ("p50", 0.5, gettext_lazy("Response time, median"),
     gettext_lazy("Half of the agent's replies started sooner than this after the caller stopped "
                  "speaking.")),
    ("p90", 0.9, gettext_lazy("Response time, 90th percentile"),
     gettext_lazy("Nine replies in ten started sooner than this.")),
    ("p95", 0.95, gettext_lazy("Response time, 95th percentile"),
     gettext_lazy("All but the slowest one in twenty replies started sooner than this.")),
    ("max", 1.0, gettext_lazy("Slowest response"),
     gettext_lazy("The longest the caller waited for a reply.")),
)  # fmt: skip


def quality(metrics: dict | None) -> Quality | None:
    """The section's figures; ``None`` when the call has no figures yet (they come at its end)."""
    if not metrics:
        return None
    m = metrics
    latencies = m.get("response_latency_ms")
    latencies = latencies if isinstance(latencies, list) else []
    replies = len([v for v in latencies if _number(v) is not None])

    responsiveness = [
        QualityFigure(
            "greeting_latency_ms",
            _("Greeting latency"),
            _time(m.get("greeting_latency_ms", m.get("first_agent_audio_ms"))),
            _(
                "From the start of the call's audio to the agent's first words going out to the "
                "caller (its greeting, or its first reply if it waits for the caller)."
            ),
        ),
    ]
    for name, share, label, meaning in _LATENCIES:
        stored = m.get(f"response_latency_ms_{name}")
        value = stored if _number(stored) is not None else percentile(latencies, share)
        responsiveness.append(
            QualityFigure(f"response_latency_ms_{name}", str(label), _time(value), str(meaning))
        )
    responsiveness.append(
        QualityFigure(
            "response_latency_ms",
            _("Replies measured"),
            _count(replies) if replies else "",
            _("Replies timed from the end of the caller's speech to the agent's first audio."),
        )
    )

    clears = m.get("barge_in_clear_ms")
    clears = clears if isinstance(clears, list) else []
    interruptions = [
        QualityFigure(
            "barge_ins",
            _("Barge-ins"),
            _count(m.get("barge_ins")),
            _(
                "Times the caller started speaking while the agent was talking, and the agent "
                "stopped."
            ),
        ),
        QualityFigure(
            "false_interruptions",
            _("False interruptions"),
            _count(m.get("false_interruptions")),
            _(
                "Barge-ins that turned out to be noise (no words followed): the agent picked up "
                "again. Part of the barge-ins above."
            ),
        ),
        QualityFigure(
            "barge_in_clear_ms_p50",
            _("Barge-in reaction, median"),
            _short(percentile(clears, 0.5)),
            _(
                "From hearing the caller start to telling the phone company to stop the agent's "
                "audio."
            ),
        ),
        QualityFigure(
            "barge_in_clear_ms_max",
            _("Barge-in reaction, slowest"),
            _short(percentile(clears, 1.0)),
            _("The longest of those reactions."),
        ),
    ]

    network = [
        QualityFigure(
            "network_delay_ms",
            _("Network delay (one way)"),
            _short(m.get("network_delay_ms")),
            _(
                "Estimated time the agent's audio takes to reach the phone company, from the "
                "timing of its playback confirmations."
            ),
        ),
        QualityFigure(
            "jitter_ms",
            _("Jitter buffer"),
            _short(m.get("jitter_ms")),
            _(
                "Estimated time the phone company holds the agent's audio before playing it, to "
                "smooth out uneven arrival."
            ),
        ),
    ]

    return Quality(
        groups=[
            (_("Responsiveness"), responsiveness),
            (_("Network"), network),
            # Last: the table of each barge-in follows it.
            (_("Interruptions"), interruptions),
        ],
        barge_ins=_barge_in_rows(m.get("barge_in_cuts")),
    )


def response_median(metrics: dict | None) -> str:
    """The call's median response time ("0.8 s"), stored or worked out; empty when unmeasured."""
    if not isinstance(metrics, dict):
        return ""
    stored = metrics.get("response_latency_ms_p50")
    if _number(stored) is not None:
        return _time(stored)
    latencies = metrics.get("response_latency_ms")
    return _time(percentile(latencies, 0.5)) if isinstance(latencies, list) else ""


def _barge_in_rows(cuts) -> list[BargeInRow]:
    rows = []
    for number, cut in enumerate(cuts if isinstance(cuts, list) else [], start=1):
        if not isinstance(cut, dict):
            continue
        heard, generated = _number(cut.get("heard_ms")), _number(cut.get("generated_ms"))
        share = ""
        if heard is not None and generated:
            share = f"{min(heard / generated, 1.0):.0%}"
        at_ms = _number(cut.get("at_ms"))
        rows.append(
            BargeInRow(
                number=number,
                when=clock(at_ms) if at_ms is not None else "",
                heard=_precise(heard),
                generated=_precise(generated),
                share=share,
                false=cut.get("false") is True,
            )
        )
    return rows
