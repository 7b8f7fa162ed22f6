"""Turn what the generator and the fake provider recorded into one level's figures.

Both processes timestamp with ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole
machine), so a time taken in one process can be subtracted from a time taken in the other.

Matching (per call, per direction):

* **by cumulative duration** (the general rule, immune to transcoding and re-chunking): the
  receiver notes the total audio it has received after each message; the sender notes the total
  it had sent after each message. A message received when the receiver's total reaches ``E`` is
  matched to the first sent message whose running total reached ``E``: latency is the receipt
  time minus that send time, i.e. how long the *last* byte of the received chunk took. Missing
  audio can only be counted as a total (``sent - received``), and a gap shifts later matches.
* **by tag** (used when the audio passes through untouched, as Twilio μ-law ↔ OpenAI
  ``audio/pcmu`` does): every bench frame names itself (``bench.tagging``), so each received
  frame is matched to its own send time, and lost and duplicated frames are counted exactly.

``method="auto"`` uses tags when nearly all received messages carry one. Only frames *sent* inside
the steady window count. Outbound frames of a reply that a barge-in cut off, sent in the half
second before it, may be legitimately dropped by the bridge (the pacer's queue is cleared): they
are counted as ``cleared``, not lost.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

import numpy as np

BARGE_IN_CLEAR_WINDOW = (
    0.5  # s before a barge-in in which a dropped frame of that reply is "cleared"
)
#: Seconds before a caller's ``stop`` after which its frames are not measured (the generator
#: stops the N calls this long after the window, too).
HANGUP_MARGIN = 0.2


def summarize(values_s: Iterable[float]) -> dict:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    arr = np.asarray(
        list(values_s) if not isinstance(values_s, np.ndarray) else values_s, dtype=float
    )
    if arr.size == 0:
        return {"n": 0, "p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    ms = arr * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "n": int(arr.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
    }


class Match:
    """Latencies (s) of one direction of one call, and what went missing."""

    def __init__(self, method: str):
        self.method = method
        self.latencies: list[float] = []
        self.sent = 0  # frames (tag) or bytes (duration) sent in the window
        self.lost = 0
        self.duplicated = 0
        self.cleared = 0
        self.lost_ids: list[int] = []


def tagged_fraction(tags: Sequence[int]) -> float:
    if not len(tags):
        return 0.0
    return sum(1 for t in tags if t >= 0) / len(tags)


def match_by_tag(
    sent_t: Sequence[float],
    sent_tag: Sequence[int] | None,
    recv_t: Sequence[float],
    recv_tag: Sequence[int],
    window: tuple[float, float],
    cleared: set[int] | None = None,
) -> Match:
    """``sent_tag[i]`` is the tag of the i-th sent frame (``None``: the tag is ``i``)."""
    result = Match("tag")
    lo, hi = window
    send_time: dict[int, float] = {}
    if sent_tag is None:
        send_time = dict(enumerate(sent_t))
    else:
        for t, tag in zip(sent_t, sent_tag, strict=True):
            if tag >= 0:
                send_time[tag] = t
    seen: dict[int, int] = {}
    for t, tag in zip(recv_t, recv_tag, strict=True):
        sent = send_time.get(tag)
        if sent is None or not lo <= sent <= hi:
            continue
        count = seen.get(tag, 0)
        seen[tag] = count + 1
        if count:
            result.duplicated += 1
            continue
        result.latencies.append(t - sent)
    for tag, sent in send_time.items():
        if lo <= sent <= hi:
            result.sent += 1
            if tag not in seen:
                if cleared and tag in cleared:
                    result.cleared += 1
                else:
                    result.lost += 1
                    result.lost_ids.append(tag)
    return result


def match_by_duration(
    sent_t: Sequence[float],
    sent_cum: Sequence[int],
    recv_t: Sequence[float],
    recv_cum: Sequence[int],
    window: tuple[float, float],
    frame_bytes: int = 160,
) -> Match:
    """Match by running totals of audio (bytes of the same format on both sides, or any unit
    proportional to duration). Loss and duplication are whole-call totals, in frames."""
    result = Match("duration")
    lo, hi = window
    sent_cum = list(sent_cum)
    for t, cum in zip(recv_t, recv_cum, strict=True):
        i = bisect_left(sent_cum, cum)
        if i >= len(sent_cum):
            continue  # more than was sent: counted as duplicated below
        sent = sent_t[i]
        if lo <= sent <= hi:
            result.latencies.append(t - sent)
    total_sent = sent_cum[-1] if sent_cum else 0
    total_recv = recv_cum[-1] if len(recv_cum) else 0
    in_window = [i for i, t in enumerate(sent_t) if lo <= t <= hi]
    if in_window:
        first = sent_cum[in_window[0] - 1] if in_window[0] else 0
        result.sent = (sent_cum[in_window[-1]] - first) // frame_bytes
    result.lost = max(0, total_sent - total_recv) // frame_bytes
    result.duplicated = max(0, total_recv - total_sent) // frame_bytes
    return result


def choose(method: str, sent_tag: Sequence[int], recv_tag: Sequence[int]) -> str:
    """``auto``: match by tag unless the sender tagged its audio and the receiver saw (almost)
    none of the tags, i.e. the audio was transcoded on the way.

    Untagged audio (the agent's greeting) is not bench audio: the tag method ignores it, and so
    does this choice, which compares the tagged frames received with those sent (a short call
    can receive more greeting than tagged audio in its window). Nothing received at all also
    means tags, so that tagged frames sent in the window count as lost.
    """
    if method != "auto":
        return method
    if not len(recv_tag) or tagged_fraction(sent_tag) < 0.5:
        return "tag"
    sent_tagged = sum(1 for t in sent_tag if t >= 0)
    recv_tagged = sum(1 for t in recv_tag if t >= 0)
    return "tag" if recv_tagged >= 0.5 * sent_tagged else "duration"


def _window_tags(
    times: Sequence[float], tags: Sequence[int], window: tuple[float, float]
) -> list[int]:
    lo, hi = window
    return [tag for t, tag in zip(times, tags, strict=True) if lo <= t <= hi + 1.0]


def _cum_of_frames(count: int, frame_bytes: int = 160) -> list[int]:
    return [frame_bytes * (k + 1) for k in range(count)]


def analyse(gen: dict, fake: dict, *, method: str = "auto", out_margin: float = 0.0) -> dict:
    """One level: the figures of the report, plus per-call detail for debugging.

    ``out_margin``: agent frames sent in the last seconds of a call's window are not measured
    (the pipeline's TTS runs ahead of real time, so its last frames may still wait in the pacer
    when the caller hangs up)."""
    window = gen["window"]
    lo, hi = window
    steady = hi - lo
    sessions = {s["key"]: s for s in fake["sessions"].values()}
    inbound: list[Match] = []
    outbound: list[Match] = []
    first_audio: list[float] = []
    first_audio_joining: list[float] = []
    joiner_seconds = 0.0  # call-seconds of the joining calls inside the window
    bargein_clear: list[float] = []
    bargein_truncate: list[float] = []
    bargein_missed = 0
    pong: list[float] = []
    failed: dict[str, str] = {}
    webhook: list[float] = []
    send_lag: list[float] = []
    marks = [0, 0]
    methods = set()
    for number, caller in gen["callers"].items():
        if caller["webhook_ms"] is not None:
            webhook.append(caller["webhook_ms"] / 1000)
        if caller["error"]:
            failed[number] = caller["error"]
        elif caller["first_media"] is None:
            failed[number] = "no agent audio"
        elif (
            caller["close_code"] not in (1000, None)
            and caller["closed_at"]
            and caller["closed_at"] < (caller["stop_sent"] or math.inf)
        ):
            failed[number] = f"closed by the server with {caller['close_code']}"
        joiner = caller.get("joiner", False)
        if caller["first_media"] is not None and caller["start_sent"] is not None:
            (first_audio_joining if joiner else first_audio).append(
                caller["first_media"] - caller["start_sent"]
            )
        if joiner and caller["start_sent"] is not None:
            ended = caller["stop_sent"] or caller["closed_at"] or hi
            joiner_seconds += max(0.0, min(ended, hi) - max(caller["start_sent"], lo))
        # A call that starts and hangs up inside the window (a joining one) is measured from
        # its first agent audio, as the N calls are measured only once all are set up: what it
        # sent before its provider session was ready waited for the set-up, which "first audio"
        # reports. It is measured up to shortly before its stop, as the others are: agent audio
        # still in flight when the caller hangs up is never delivered, and is not lost.
        call_window = (
            max(lo, caller["first_media"] or lo) if joiner else lo,
            min(hi, (caller["stop_sent"] or math.inf) - HANGUP_MARGIN),
        )
        send_lag.extend(
            x
            for t, x in zip(caller["sent_t"], caller["send_lag"], strict=False)
            if call_window[0] <= t <= call_window[1]
        )
        marks[0] += caller["marks_received"]
        marks[1] += caller["marks_echoed"]
        session = sessions.get(number)
        if session is None:
            if number not in failed and caller["start_sent"] is not None:
                failed[number] = "no provider session"
            continue
        # Caller -> provider.
        sent_tags = [0] * sum(
            1 for t in caller["sent_t"] if call_window[0] <= t <= call_window[1]
        )  # the generator tags every frame
        m = choose(method, sent_tags, _window_tags(session["in_t"], session["in_tag"], call_window))
        methods.add(("in", m))
        if m == "tag":
            inbound.append(
                match_by_tag(
                    caller["sent_t"], None, session["in_t"], session["in_tag"], call_window
                )
            )
        else:
            inbound.append(
                match_by_duration(
                    caller["sent_t"],
                    _cum_of_frames(len(caller["sent_t"])),
                    session["in_t"],
                    session["in_cum"],
                    call_window,
                )
            )
        # Provider -> caller.
        cleared: set[int] = set()
        for t_bi, reply, _item in session["bargeins"]:
            for t, tag, resp in zip(
                session["out_t"], session["out_tag"], session["out_resp"], strict=True
            ):
                if resp == reply and t_bi - BARGE_IN_CLEAR_WINDOW <= t <= t_bi and tag >= 0:
                    cleared.add(tag)
        out_window = (call_window[0], call_window[1] - out_margin)
        m = choose(
            method,
            _window_tags(session["out_t"], session["out_tag"], out_window),
            _window_tags(caller["recv_t"], caller["recv_tag"], out_window),
        )
        methods.add(("out", m))
        if m == "tag":
            outbound.append(
                match_by_tag(
                    session["out_t"],
                    session["out_tag"],
                    caller["recv_t"],
                    caller["recv_tag"],
                    out_window,
                    cleared,
                )
            )
        else:
            outbound.append(
                match_by_duration(
                    session["out_t"],
                    session["out_cum"],
                    caller["recv_t"],
                    caller["recv_cum"],
                    out_window,
                )
            )
        # Barge-in reaction.
        clears = list(caller["clears"])
        truncates = {item: t for t, item, _ in session["truncates"]}
        for t_bi, _reply, item in session["bargeins"]:
            if not lo <= t_bi <= hi:
                continue
            after = [c for c in clears if t_bi <= c <= t_bi + 1.0]
            if after:
                bargein_clear.append(after[0] - t_bi)
            else:
                bargein_missed += 1
            if item in truncates and truncates[item] >= t_bi:
                bargein_truncate.append(truncates[item] - t_bi)
        # ElevenLabs' ping → the bridge's pong (the OpenAI fake sends no pings).
        pong.extend(
            d
            for t, d in zip(session.get("pong_t", ()), session.get("pong_delay", ()), strict=True)
            if lo <= t <= hi
        )
    calls = sum(1 for c in gen["callers"].values() if not c.get("joiner", False))
    stats = gen["stats"]
    a, b = stats.get("window_start", {}), stats.get("window_end", {})
    elapsed = (b.get("t", 0) - a.get("t", 0)) or steady
    server_cpu = b.get("server_cpu", math.nan) - a.get("server_cpu", math.nan)
    core1 = (b.get("self_cpu", 0) - a.get("self_cpu", 0)) + (
        b.get("fake_cpu", 0) - a.get("fake_cpu", 0)
    )
    health = [(d, s) for t, d, s in gen["health"] if lo <= t <= hi]
    in_lat = [x for m in inbound for x in m.latencies]
    out_lat = [x for m in outbound for x in m.latencies]
    return {
        "calls": calls,
        "joiners": len(gen["callers"]) - calls,
        "failed": len(failed),
        "failures": dict(list(failed.items())[:5]),
        "methods": sorted(methods),
        "inbound": summarize(in_lat),
        "outbound": summarize(out_lat),
        "in_sent": sum(m.sent for m in inbound),
        "in_lost": sum(m.lost for m in inbound),
        "in_dup": sum(m.duplicated for m in inbound),
        "out_sent": sum(m.sent for m in outbound),
        "out_lost": sum(m.lost for m in outbound),
        "out_dup": sum(m.duplicated for m in outbound),
        "out_cleared": sum(m.cleared for m in outbound),
        # Calls of the ramp (N starting close together) and calls joining N live ones.
        "first_audio": summarize(first_audio),
        "first_audio_joining": summarize(first_audio_joining),
        "webhook": summarize(webhook),
        "bargein_clear": summarize(bargein_clear),
        "bargein_truncate": summarize(bargein_truncate),
        "bargein_missed": bargein_missed,
        "pong": summarize(pong),
        "health": summarize([d for d, _ in health]),
        "health_failed": sum(1 for _, s in health if s != 200),
        "server_cpu_s": server_cpu,
        "server_core": server_cpu / elapsed if elapsed else math.nan,
        # The joining calls' minutes count too: their set-up and end are in the CPU figure.
        "cpu_per_call_minute": server_cpu / ((calls * elapsed + joiner_seconds) / 60)
        if calls and elapsed
        else math.nan,
        "server_rss": b.get("server_rss", 0),
        "core1": core1 / elapsed if elapsed else math.nan,
        "loadavg": b.get("loadavg", math.nan),
        # Busy time of each core during the window that was not the server (core 0) or the
        # generator and fake (core 1): other processes on the machine disturbing the measurement.
        "foreign0": _foreign(a, b, 0, server_cpu, elapsed),
        "foreign1": _foreign(a, b, 1, core1, elapsed),
        "send_lag": summarize(send_lag),
        "marks": marks,
        "steady_s": elapsed,
        # Seconds from the first call start until every call had its first agent audio.
        "setup_s": gen.get("set_up", math.nan) - gen.get("t0", math.nan),
    }


def _foreign(a: dict, b: dict, core: int, ours: float, elapsed: float) -> float:
    try:
        busy = b["cores"][core] - a["cores"][core]
    except (KeyError, IndexError, TypeError):
        return math.nan
    return max(0.0, busy - ours) / elapsed if elapsed else math.nan


def passes(level: dict, *, p99_ms: float = 10.0) -> tuple[bool, list[str]]:
    """The sweep's criterion: p99 ≤ ``p99_ms`` each way, nothing lost or duplicated, no failed call."""
    why = []
    for direction in ("inbound", "outbound"):
        p99 = level[direction]["p99"]
        if level[direction]["n"] and not p99 <= p99_ms:
            why.append(f"{direction} p99 {p99:.1f} ms")
    for key in ("in_lost", "in_dup", "out_lost", "out_dup"):
        if level[key]:
            why.append(f"{key} {level[key]}")
    if level["failed"]:
        why.append(f"{level['failed']} failed calls")
    if level["inbound"]["n"] == 0:
        why.append("no inbound audio matched")
    return not why, why


#: A caller turn whose reply has not reached the caller this long after the end of its speech
#: counts as a missing reply (the fixed delays are a fraction of it).
PIPELINE_REPLY_TIMEOUT = 1.5


def analyse_pipeline(gen: dict, fake: dict, level: dict) -> dict:
    """Add the pipeline figures to ``level`` (``analyse``'s result), per caller turn.

    A turn counts when its last voiced frame was sent inside a caller's measured window and at
    least ``PIPELINE_REPLY_TIMEOUT`` before its end. **Added latency** = the reply's first agent
    frame reaching the caller − that last voiced frame leaving the caller − the fake's fixed
    delays (STT + LLM + TTS). It splits into what our code did between the fake's answers:
    caller frame → Deepgram, Results → chat request, first sentence → TTS request, first TTS
    chunk → caller; the rest (``fake_late``) is the fake answering later than its delays.
    """
    args = fake["args"]
    fixed = (args["stt_delay"] + args["llm_delay"] + args["tts_delay"]) / 1000
    lo, hi = gen["window"]
    sessions = {s["key"]: s for s in fake["sessions"].values()}
    added: list[float] = []
    parts: dict[str, list[float]] = {
        "inbound": [],
        "stt_to_llm": [],
        "llm_to_tts": [],
        "tts_to_caller": [],
        "fake_late": [],
    }
    missing = 0
    for number, caller in gen["callers"].items():
        session = sessions.get(number)
        if session is None or caller.get("joiner"):
            continue
        end = min(hi, (caller["stop_sent"] or math.inf) - HANGUP_MARGIN) - PIPELINE_REPLY_TIMEOUT
        received: dict[int, float] = {}
        for t, tag in zip(caller["recv_t"], caller["recv_tag"], strict=True):
            if tag >= 0 and tag not in received:
                received[tag] = t
        sent_t = caller["sent_t"]
        for turn in session["turns"]:
            k = turn["end_tag"]
            if not 0 <= k < len(sent_t) or not lo <= sent_t[k] <= end:
                continue
            spoke = sent_t[k]
            heard = received.get(turn.get("first_tag", -1))
            if heard is None:
                missing += 1
                continue
            added.append(heard - spoke - fixed)
            try:
                parts["inbound"].append(turn["end_recv"] - spoke)
                parts["stt_to_llm"].append(turn["chat_req"] - turn["results_sent"])
                parts["llm_to_tts"].append(turn["tts_req"] - turn["first_text_sent"])
                parts["tts_to_caller"].append(heard - turn["tts_first_sent"])
                parts["fake_late"].append(
                    (turn["results_sent"] - turn["end_recv"])
                    + (turn["first_text_sent"] - turn["chat_req"])
                    + (turn["tts_first_sent"] - turn["tts_req"])
                    - fixed
                )
            except KeyError:
                pass  # a reply the fake could not name: counted in "added" only
    level["added"] = summarize(added)
    level["added_parts"] = {name: summarize(values) for name, values in parts.items()}
    level["turns"] = len(added)
    level["turns_missing"] = missing
    level["fixed_ms"] = fixed * 1000
    return level


def passes_pipeline(level: dict, *, added_ms: float = 20.0, p99_ms: float = 10.0):
    """Pipeline criterion: added latency p99 ≤ ``added_ms``, every turn answered, caller audio
    relayed to the STT as in the other modes (inbound p99 ≤ ``p99_ms``, nothing lost), no
    failed call. Agent audio is not judged on latency: the TTS sends it faster than real time
    and the pacer holds it on purpose; it must all arrive."""
    why = []
    if not level["turns"]:
        why.append("no caller turn answered")
    elif not level["added"]["p99"] <= added_ms:
        why.append(f"added p99 {level['added']['p99']:.1f} ms")
    if level["turns_missing"]:
        why.append(f"{level['turns_missing']} turns unanswered")
    if level["inbound"]["n"] and not level["inbound"]["p99"] <= p99_ms:
        why.append(f"inbound p99 {level['inbound']['p99']:.1f} ms")
    for key in ("in_lost", "in_dup", "out_lost", "out_dup"):
        if level[key]:
            why.append(f"{key} {level[key]}")
    if level["failed"]:
        why.append(f"{level['failed']} failed calls")
    if level["inbound"]["n"] == 0:
        why.append("no inbound audio matched")
    return not why, why
