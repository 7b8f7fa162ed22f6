"""``kill -9`` of a real daphne or uvicorn process with five live calls, then a restart.

Each caller streams a tone in real time while the fake OpenAI answers three caller turns; a
fourth caller turn is still in progress when the server is killed. Once a new process of the
server takes its first call, it finds the dead process's calls (its pid is gone from this host)
and closes them as ``lost``: every finished turn is in the database, and the recordings were
on disk to within 1.5 s of the kill, repaired so that a WAV reader opens them.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
import wave
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.fakes.twilio import mark as twilio_mark
from tests.voiceagents.audio.signals import rms, tone
from voiceagents.audio.g711 import ulaw_encode
from voiceagents.call import streamtokens

from .calls import LoopThread
from .running import SERVERS, seed, server_env, start_server
from .test_stream_refusals import TWILIO, twilio_headers, twilio_start

CALLS = 5
ROUNDS = 3
#: 20 ms of a 440 Hz tone, µ-law: what every caller says, all the time.
FRAME = ulaw_encode(tone(440, 8000, 0.02, amplitude=8000))


class Caller(threading.Thread):
    """Twilio's side of one call: the stream's start, then a frame every 20 ms, in real time,
    until the server goes away (or ``hang_up`` is set: then a ``stop``). Marks are echoed as
    they arrive, as Twilio does once the audio before them has played: the agent's audio comes
    at the pace of playout, so on arrival is within the server's small lead of "played"."""

    def __init__(self, port: int, call: dict):
        super().__init__(daemon=True)
        self.port, self.call = port, call
        self.frames_sent = 0
        self.hang_up = threading.Event()
        self.gone = threading.Event()

    def run(self):
        token = streamtokens.mint(self.call["call_id"])
        start = twilio_start(self.call["call_id"], token, self.call["call_sid"])
        sid = start["start"]["streamSid"]
        media = json.dumps(
            {
                "event": "media",
                "streamSid": sid,
                "media": {"payload": base64.b64encode(FRAME).decode()},
            }
        )
        try:
            with connect(
                f"ws://127.0.0.1:{self.port}{TWILIO}", additional_headers=twilio_headers()
            ) as ws:
                ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                ws.send(json.dumps(start))
                t0 = time.monotonic()
                while not self.hang_up.is_set():
                    delay = t0 + self.frames_sent * 0.02 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    ws.send(media)
                    self.frames_sent += 1
                    try:
                        while True:
                            message = json.loads(ws.recv(timeout=0))
                            if message.get("event") == "mark":
                                ws.send(json.dumps(twilio_mark(sid, message["mark"]["name"])))
                    except TimeoutError:
                        pass
                ws.send(json.dumps({"event": "stop", "streamSid": sid, "stop": {}}))
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.gone.set()


async def caller_turn(fake, session, n: int, *, finished: bool = True):
    """The caller says turn ``n`` (server VAD and transcription); the agent answers it."""
    item = f"item_caller_{n}"
    await fake.send(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": item},
        session,
    )
    if not finished:
        return
    await fake.send(
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0, "item_id": item}, session
    )
    await fake.send(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item,
            "content_index": 0,
            "transcript": f"caller turn {n}",
        },
        session,
    )
    await fake.respond(
        ScriptedResponse(audio=b"\x7f" * 1600, transcript=f"agent turn {n}"), session=session
    )


def rows(db_path: Path, sql: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, args).fetchall()


@pytest.mark.parametrize("server", SERVERS)
def test_calls_of_a_killed_server_are_closed_as_lost_on_restart(server, start_process, tmp_path):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    media_root = tmp_path / "media"
    env = server_env(tmp_path, TEST_MEDIA_ROOT=str(media_root), VOICEAGENTS_HEARTBEAT_INTERVAL="1")
    *calls, later = seed(env, openai_url=fake.url, calls=CALLS + 1)
    port, process = start_server(start_process, server, env)
    callers = [Caller(port, call) for call in calls]
    try:
        for caller in callers:
            caller.start()
        loop.run(
            fake.wait_for(lambda: len([s for s in fake.sessions if s.config]) == CALLS), timeout=20
        )
        time.sleep(1.0)  # the greetings play
        for n in range(1, ROUNDS + 1):
            for session in fake.sessions:
                loop.run(caller_turn(fake, session, n))
            time.sleep(0.8)
        time.sleep(1.2)  # finished turns are written within 1 s (0.25 s ticks): ample margin
        for session in fake.sessions:
            loop.run(caller_turn(fake, session, ROUNDS + 1, finished=False))
        time.sleep(0.3)
        sent_ms = [caller.frames_sent * 20 for caller in callers]
        process.proc.kill()  # SIGKILL: nothing of the process runs any more
        process.proc.wait(10)  # reaped, as its supervisor would
    finally:
        for caller in callers:
            caller.gone.wait(10)
    db = tmp_path / "db.sqlite3"
    statuses = rows(db, "select status from voiceagents_call where status = 'in_progress'")
    assert len(statuses) == CALLS  # what the kill left behind

    # The restarted server's first call finds them.
    port, process = start_server(start_process, server, env)
    newcomer = Caller(port, later)
    newcomer.start()
    deadline = time.monotonic() + 30
    while (
        rows(
            db,
            "select id from voiceagents_call where status = 'in_progress' and id != ?",
            later["call_id"].replace("-", ""),
        )
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    newcomer.hang_up.set()
    newcomer.gone.wait(10)
    loop.run(fake.__aexit__(None, None, None))
    loop.stop()

    for call, sent in zip(calls, sent_ms, strict=True):
        call_pk = call["call_id"].replace("-", "")
        (row,) = rows(
            db,
            "select status, end_reason, recording, recording_duration from voiceagents_call "
            "where id = ?",
            call_pk,
        )
        assert (row["status"], row["end_reason"]) == ("failed", "lost"), dict(row)
        texts = [
            r["text"]
            for r in rows(
                db,
                "select text from voiceagents_transcriptentry where call_id = ? order by seq",
                call_pk,
            )
        ]
        finished = {f"caller turn {n}" for n in range(1, ROUNDS + 1)}
        finished |= {f"agent turn {n}" for n in range(1, ROUNDS + 1)}
        assert finished <= set(texts), texts
        assert len(texts) == 1 + 2 * ROUNDS, texts  # and the greeting; the turn in progress lost
        assert row["recording"], dict(row)
        with wave.open(str(media_root / row["recording"]), "rb") as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
            frames = wav.getnframes()
            audio = np.frombuffer(wav.readframes(frames), dtype="<i2").reshape(-1, 2)
        recorded_ms = frames / 8
        # Data reaches the disk every 0.25 s; the rest of the margin is the frames counted as
        # sent that a busy machine still held in socket buffers, unread, when the server died.
        assert sent - 2000 <= recorded_ms <= sent + 1000, (recorded_ms, sent)
        assert timedelta(microseconds=row["recording_duration"]) == timedelta(
            milliseconds=recorded_ms
        )
        assert rms(audio[8000:-800, 0]) > 1000  # the caller's tone, on the left
        assert not list(tmp_path.glob(f"voiceagents-{call['call_id']}.wav"))
    log = process.output()
    assert f"closed {CALLS} call(s) a stopped server process left live" in log, log
