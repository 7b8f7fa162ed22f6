"""The call benchmark's own correctness: does it measure what it reports?

The load generator and the fake provider run, as in the real benchmark, as their own processes,
against ``bench.reference``: a tiny bridge into which faults are injected (every 10th caller
frame dropped, caller frames held 8 ms, caller audio re-cut and transformed as a transcoder
would). The report must show exactly those faults. The matching functions and the generator's
Twilio-style mark playback are also checked directly, without sockets.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import analysis, loadgen, tagging

ROOT = Path(__file__).resolve().parents[2]
STEADY = 2.5


def _run(tmp: Path, name: str, bridge_args: list[str], fake_args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    fake_out, gen_out = tmp / f"{name}-fake.pickle", tmp / f"{name}-gen.pickle"
    fake = subprocess.Popen(
        [
            py,
            "-m",
            "bench.fakeprovider",
            "--port",
            "0",
            "--greeting-ms",
            "200",
            "--out",
            str(fake_out),
            "--max-seconds",
            "60",
            *fake_args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    bridge = None
    try:
        fake_port = int(fake.stdout.readline().split()[1])
        bridge = subprocess.Popen(
            [
                py,
                "-m",
                "bench.reference",
                "--provider",
                f"ws://127.0.0.1:{fake_port}/v1/realtime",
                "--max-seconds",
                "60",
                *bridge_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(bridge.stdout.readline().split()[1])
        subprocess.run(
            [
                py,
                "-m",
                "bench.loadgen",
                "--target",
                f"127.0.0.1:{port}",
                "--auth-token",
                "unused",
                "--calls",
                "3",
                "--ramp",
                "0.3",
                "--settle",
                "0.8",
                "--steady",
                str(STEADY),
                "--close-timeout",
                "5",
                "--timeout",
                "5",
                "--out",
                str(gen_out),
            ],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=40,
        )
    finally:
        fake.terminate()
        fake.wait(10)
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
    with open(gen_out, "rb") as f:
        gen = pickle.load(f)
    with open(fake_out, "rb") as f:
        fake_data = pickle.load(f)
    return analysis.analyse(gen, fake_data)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    scenarios = {
        "drop": (["--drop-every", "10"], ["--mode", "echo", "--barge-in", "1.0", "--turn", "0.6"]),
        "delay": (["--delay-ms", "8"], ["--mode", "echo"]),
        "transcode": (["--rechunk"], ["--mode", "sink"]),
    }
    with ThreadPoolExecutor(len(scenarios)) as pool:
        futures = {name: pool.submit(_run, tmp, name, *args) for name, args in scenarios.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_tenth_frame_dropped_is_ten_percent_loss(reports):
    r = reports["drop"]
    assert r["failed"] == 0, r["failures"]
    assert ("in", "tag") in r["methods"]
    # The bridge drops frame 10, 20, ... of each stream (how many were sent follows the clock).
    assert r["in_sent"] > 100
    assert abs(r["in_lost"] / r["in_sent"] - 0.10) <= 0.01
    assert r["in_dup"] == 0
    assert r["out_lost"] == 0 and r["out_dup"] == 0 and r["outbound"]["n"] > 100


def test_barge_in_reaction_and_marks(reports):
    r = reports["drop"]
    # speech_started every second per call: the bridge answers each with clear + truncate.
    assert r["bargein_clear"]["n"] >= 3
    assert r["bargein_missed"] == 0
    assert r["bargein_truncate"]["n"] == r["bargein_clear"]["n"]
    received, echoed = r["marks"]
    # Marks are echoed once played, never more than were sent; how many were still playing at
    # "stop" depends on the machine's speed (``test_speed_figures_of_an_idle_machine``).
    assert received > 50 and 0 < echoed <= received


def test_added_delay_is_measured(reports):
    r = reports["delay"]
    assert r["failed"] == 0, r["failures"]
    assert r["in_lost"] == 0 and r["in_dup"] == 0
    # Never less than the 8 ms held back; a busy machine adds to it.
    assert r["inbound"]["p50"] >= 8.0
    assert r["health"]["n"] >= 3


def test_a_call_joining_the_live_ones_is_reported_apart(reports):
    r = reports["delay"]
    # A 2.5 s window gets one joining call, started in it; the three ramp calls stay "the calls".
    assert (r["calls"], r["joiners"]) == (3, 1)
    assert r["failed"] == 0, r["failures"]
    assert r["first_audio"]["n"] == 3 and r["first_audio_joining"]["n"] == 1
    assert r["first_audio_joining"]["p50"] > 0


def test_transcoded_audio_is_matched_by_duration(reports):
    r = reports["transcode"]
    assert r["failed"] == 0, r["failures"]
    assert ("in", "duration") in r["methods"]
    assert r["inbound"]["n"] > 100
    # Only the last partial 100-byte piece of each call can be missing (less than a frame).
    assert r["in_lost"] == 0 and r["in_dup"] == 0
    assert r["outbound"]["n"] == 0  # sink: only the (untagged) greeting comes back


@pytest.mark.bench
def test_speed_figures_of_an_idle_machine(reports):
    """The figures themselves, which only hold on an idle machine: ``make bench`` runs this."""
    drop, delay, transcode = reports["drop"], reports["delay"], reports["transcode"]
    # 3 calls x 2.5 s x 50 frames, plus the joining call's ~1.4 s in the window.
    assert 340 <= drop["in_sent"] <= 480
    # Tag matching keeps the other frames' latency right despite the gaps.
    assert drop["inbound"]["p50"] < 5 and drop["outbound"]["n"] > 200
    # The bridge answers each barge-in with clear + truncate at once.
    assert drop["bargein_clear"]["p50"] < 20
    received, echoed = drop["marks"]
    # Every mark is echoed once played, except at most one per call still playing at "stop".
    assert received > 100 and received - 3 <= echoed <= received
    assert 8.0 <= delay["inbound"]["p50"] <= 14.0
    assert delay["outbound"]["p50"] < 5
    assert delay["health"]["n"] >= 8
    # The reference bridge answers at once: the greeting reaches the caller within milliseconds.
    assert 0 < delay["first_audio_joining"]["p50"] < 100
    assert transcode["inbound"]["n"] > 300 and transcode["inbound"]["p50"] < 5


# -- matching without sockets -------------------------------------------------------------------


def test_match_by_tag_counts_loss_duplicates_and_exact_latency():
    sent = [i * 0.02 for i in range(100)]
    recv_t, recv_tag = [], []
    for i in range(100):
        if i % 10 == 9:
            continue
        recv_t.append(sent[i] + 0.003)
        recv_tag.append(i)
    recv_t.append(sent[5] + 0.5)
    recv_tag.append(5)  # a duplicate
    m = analysis.match_by_tag(sent, None, recv_t, recv_tag, (0.0, 10.0))
    assert (m.sent, m.lost, m.duplicated) == (100, 10, 1)
    assert all(abs(x - 0.003) < 1e-9 for x in m.latencies)


def test_match_by_duration_survives_rechunking():
    sent_t = [i * 0.02 for i in range(50)]
    sent_cum = [160 * (i + 1) for i in range(50)]
    # The receiver gets 100-byte pieces as soon as the frame completing them arrived, 2 ms later.
    recv_t, recv_cum = [], []
    for end in range(100, 160 * 50 + 1, 100):
        frame = (end - 1) // 160
        recv_t.append(sent_t[frame] + 0.002)
        recv_cum.append(end)
    m = analysis.match_by_duration(sent_t, sent_cum, recv_t, recv_cum, (0.0, 10.0))
    assert all(abs(x - 0.002) < 1e-9 for x in m.latencies)
    assert m.lost == 0 and m.duplicated == 0


def test_tag_matching_is_chosen_by_the_tagged_frames_not_the_greeting():
    # A short (joining) call: 20 untagged greeting frames and 12 tagged ones received, of 12 sent.
    assert analysis.choose("auto", list(range(12)), [-1] * 20 + list(range(12))) == "tag"
    # Transcoded on the way: none of the tags survived.
    assert analysis.choose("auto", list(range(12)), [-1] * 32) == "duration"
    # Nothing received: the tagged frames sent count as lost.
    assert analysis.choose("auto", list(range(12)), []) == "tag"


def test_tags_round_trip():
    payload = tagging.frame_b64(123456)
    assert len(payload) == 216 and tagging.b64_len(payload) == 160
    assert tagging.read_tag(payload) == 123456
    assert tagging.read_tag(tagging.FILLER_B64) == -1
    assert loadgen.twilio_signature("https://x.test/a", {"B": "2", "A": "1"}, "tok") == (
        __import__("base64")
        .b64encode(__import__("hmac").new(b"tok", b"https://x.test/aA1B2", "sha1").digest())
        .decode()
    )


class _Transport:
    def __init__(self):
        self.writes: list[tuple[float, bytes]] = []

    def write(self, data):
        self.writes.append((loadgen.monotonic(), data))

    def is_closing(self):
        return False


class _Gen:
    run_id = "test"

    def __init__(self, loop):
        self.loop = loop


async def test_marks_echo_after_the_audio_before_them_has_played():
    caller = loadgen.Caller(_Gen(asyncio.get_running_loop()), 0, "+1999")
    caller.transport = _Transport()
    media = (
        b'{"event":"media","streamSid":"MZ1","media":{"payload":"'
        + tagging.frame_b64(0).encode()
        + b'"}}'
    )
    now = loadgen.monotonic()
    for _ in range(5):  # 100 ms of audio
        caller._media(media[media.index(b'"payload":"') + 11 : -3], now)
    caller._event(b'{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}', now)
    assert caller.transport.writes == []
    await asyncio.sleep(0.06)
    assert caller.transport.writes == []  # 60 ms in: still playing
    await asyncio.sleep(0.08)
    assert len(caller.transport.writes) == 1 and b'"m1"' in caller.transport.writes[0][1]
    assert caller.transport.writes[0][0] - now >= 0.099
    # A clear echoes outstanding marks at once.
    for _ in range(50):
        caller._media(media[media.index(b'"payload":"') + 11 : -3], loadgen.monotonic())
    caller._event(b'{"event":"mark","streamSid":"MZ1","mark":{"name":"m2"}}', loadgen.monotonic())
    caller._event(b'{"event":"clear","streamSid":"MZ1"}', loadgen.monotonic())
    assert len(caller.transport.writes) == 2 and b'"m2"' in caller.transport.writes[1][1]
    assert caller.marks_received == caller.marks_echoed == 2
