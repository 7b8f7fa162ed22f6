"""The counters of one call, written to ``Call.metrics`` when it ends."""

from __future__ import annotations

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


class CallMetrics:
    """Plain attributes rather than a dict: the audio path bumps some of them for every frame.

    Times are ms; ``None`` means "did not happen" and is left out of the report.
    """

    __slots__ = (
        *COUNTERS,
        "provider_connect_ms",
        "first_agent_audio_ms",
        "response_latency_ms",
        "barge_in_clear_ms",
        "carrier",
        "_speech_stopped_at",
    )

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.provider_connect_ms: float | None = None
        self.first_agent_audio_ms: float | None = None
        #: From the end of the caller's speech to the first agent audio played after it.
        self.response_latency_ms: list[float] = []
        #: How long each barge-in took from the speech start to the carrier's clear being sent.
        self.barge_in_clear_ms: list[float] = []
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

    def barge_in(self, clear_ms: float) -> None:
        self.barge_ins += 1
        self.barge_in_clear_ms.append(clear_ms)

    def false_interruption(self) -> None:
        """A barge-in turned out to be noise (no caller words): the agent resumed."""
        self.false_interruptions += 1

    def report(self, duration_ms: int) -> dict:
        """What ``Call.metrics`` stores."""
        report: dict = {name: getattr(self, name) for name in COUNTERS}
        if self.provider_connect_ms is not None:
            report["provider_connect_ms"] = self.provider_connect_ms
        if self.first_agent_audio_ms is not None:
            report["first_agent_audio_ms"] = self.first_agent_audio_ms
        if self.barge_in_clear_ms:
            report["barge_in_clear_ms"] = list(self.barge_in_clear_ms)
        report.update(self.carrier)
        latencies = self.response_latency_ms
        if latencies:
            report["response_latency_ms"] = list(latencies)
            report["response_latency_ms_avg"] = round(sum(latencies) / len(latencies), 1)
        report["duration_ms"] = duration_ms
        return report
