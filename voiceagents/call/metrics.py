"""The counters of one call, written to ``Call.metrics`` when it ends.

Besides plain counters a call reports its quality figures (docs/admin/calls.md says what each
means and how it is measured): the greeting latency, the response latency with its percentiles,
each barge-in's heard-vs-generated audio, false interruptions, and the network delay and jitter
buffer that playback estimated. All of them are plain attributes set at events (a turn, a
barge-in, the call's end), never per frame.
"""

from __future__ import annotations

import math

#: Counters every call reports, in the order they appear in ``Call.metrics``.
COUNTERS = (
    "frames_in",
    "frames_out",
    "caller_audio_buffered_frames",
    "caller_audio_dropped_frames",
    "agent_audio_dropped_chunks",
    "marks_sent",
    "marks_acked",
    "barge_ins",
    "false_interruptions",
    "echo_frames",
    "dtmf",
    "provider_errors",
)

#: The response latency percentiles stored next to the list, as ``response_latency_ms_<name>``.
LATENCY_PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("max", 1.0))


def percentile(values: list, share: float) -> float | None:
    """The nearest-rank percentile (``share`` 0.5 is the median, 1.0 the maximum) of ``values``.

    Nearest rank rather than interpolation: every figure shown is one that really happened.
    Values that are not numbers (a hand-edited record) are skipped.
    """
    numbers = sorted(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    if not numbers:
        return None
    return numbers[max(math.ceil(share * len(numbers)) - 1, 0)]


class CallMetrics:
    """Plain attributes rather than a dict: the audio path bumps some of them for every frame.

    Times are ms; ``None`` means "did not happen" (or "not measured") and is left out of the
    report.
    """

    __slots__ = (
        *COUNTERS,
        "provider_connect_ms",
        "greeting_latency_ms",
        "response_latency_ms",
        "barge_in_clear_ms",
        "barge_in_cuts",
        "network_delay_ms",
        "jitter_ms",
        "carrier",
        "_speech_stopped_at",
    )

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.provider_connect_ms: float | None = None
        #: From the start of the media stream to the first agent audio sent to the carrier.
        #: (Stored as ``first_agent_audio_ms`` before; the admin reads both.)
        self.greeting_latency_ms: float | None = None
        #: From the end of the caller's speech to the first agent audio played after it.
        self.response_latency_ms: list[float] = []
        #: How long each barge-in took from the speech start to the carrier's clear being sent.
        self.barge_in_clear_ms: list[float] = []
        #: Each barge-in: when (call ms), how much of the cut reply the caller heard, and how
        #: much of it the provider had generated (sent to us) by then (``None``: not measured).
        self.barge_in_cuts: list[dict] = []
        #: Playback's estimates at the end of the call: the one-way network delay to the
        #: carrier and how long the carrier holds audio before playing it (its jitter buffer).
        self.network_delay_ms: float | None = None
        self.jitter_ms: float | None = None
        #: The carrier's own counters by name, read at the end (by reference: it keeps them).
        self.carrier: dict[str, object] = {}
        self._speech_stopped_at: float | None = None

    def speech_stopped(self, now: float) -> None:
        self._speech_stopped_at = now

    def agent_heard(self, now: float) -> None:
        """An agent turn started playing: the reply latency, if the caller had just spoken."""
        if self._speech_stopped_at is not None:
            self.response_latency_ms.append(round((now - self._speech_stopped_at) * 1000, 1))
            self._speech_stopped_at = None

    def barge_in(
        self,
        clear_ms: float,
        *,
        at_ms: int | None = None,
        heard_ms: float | None = None,
        generated_ms: float | None = None,
    ) -> None:
        """The caller cut the agent off: ``clear_ms`` to react, ``heard_ms`` of the reply heard
        out of ``generated_ms`` received from the provider."""
        self.barge_ins += 1
        self.barge_in_clear_ms.append(clear_ms)
        # One entry per barge-in, even unmeasured, so that a false interruption marks its own.
        self.barge_in_cuts.append(
            {"at_ms": at_ms, "heard_ms": heard_ms, "generated_ms": generated_ms}
        )

    def false_interruption(self) -> None:
        """The latest barge-in turned out to be noise (no words followed): the agent picked up
        again. Its cut is marked ``"false": true``."""
        self.false_interruptions += 1
        if self.barge_in_cuts:
            self.barge_in_cuts[-1]["false"] = True

    def network(self, delay_ms: float | None, jitter_ms: float | None) -> None:
        """Playback's final estimates (``None``: not measured, e.g. no marks echoed)."""
        self.network_delay_ms = _rounded(delay_ms)
        self.jitter_ms = _rounded(jitter_ms)

    def live_figures(self) -> dict:
        """The quality figures so far, for the live monitor (called once per write of turns)."""
        return {
            "barge_ins": self.barge_ins,
            "false_interruptions": self.false_interruptions,
            "replies": len(self.response_latency_ms),
            "response_latency_ms_p50": percentile(self.response_latency_ms, 0.5),
        }

    def report(self, duration_ms: int) -> dict:
        """What ``Call.metrics`` stores."""
        report: dict = {name: getattr(self, name) for name in COUNTERS}
        if self.provider_connect_ms is not None:
            report["provider_connect_ms"] = self.provider_connect_ms
        if self.greeting_latency_ms is not None:
            report["greeting_latency_ms"] = self.greeting_latency_ms
        if self.barge_in_clear_ms:
            report["barge_in_clear_ms"] = list(self.barge_in_clear_ms)
        if self.barge_in_cuts:
            report["barge_in_cuts"] = [dict(cut) for cut in self.barge_in_cuts]
        if self.network_delay_ms is not None:
            report["network_delay_ms"] = self.network_delay_ms
        if self.jitter_ms is not None:
            report["jitter_ms"] = self.jitter_ms
        report.update(self.carrier)
        latencies = self.response_latency_ms
        if latencies:
            report["response_latency_ms"] = list(latencies)
            report["response_latency_ms_avg"] = round(sum(latencies) / len(latencies), 1)
            for name, share in LATENCY_PERCENTILES:
                report[f"response_latency_ms_{name}"] = percentile(latencies, share)
        report["duration_ms"] = duration_ms
        return report


def _rounded(value: float | None) -> float | None:
    """A finite figure to 0.1 ms, or ``None`` (NaN or infinity would not survive JSON)."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 1)
