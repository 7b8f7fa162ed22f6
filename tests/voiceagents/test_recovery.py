"""Recovery of calls whose server process stopped: heartbeats, lost calls, orphaned recordings."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import wave
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from tests.voiceagents.audio.signals import tone
from tests.voiceagents.factories import attach_recording, make_call
from voiceagents import services, tasks
from voiceagents.audio.recorder import CallRecorder
from voiceagents.call import ownership
from voiceagents.models import CallEvent, CallStatus, TranscriptEntry, WorkerHeartbeat

pytestmark = pytest.mark.django_db

HOST = socket.gethostname()


def heartbeat(worker: str, *, age: float = 0.0, host: str = "elsewhere", pid: int = 4242):
    return WorkerHeartbeat.objects.create(
        worker=worker, host=host, pid=pid, beat_at=timezone.now() - timedelta(seconds=age)
    )


def live_call(worker: str, **fields):
    answered = timezone.now() - timedelta(minutes=2)
    return make_call(status=CallStatus.IN_PROGRESS, worker=worker, answered_at=answered, **fields)


def unfinished_recording(path, seconds: float) -> int:
    """What a process killed mid-call leaves: audio flushed, the header's sizes still zero, and
    a partial frame at the end. Returns the whole frames on disk."""
    recorder = CallRecorder(path, sample_rate=8000)
    chunk = tone(500, 8000, 0.02, 6000).tobytes()
    for step in range(int(seconds * 50)):
        recorder.write_caller(chunk, at_ms=step * 20)
    recorder._file.flush()
    raw = bytearray(path.read_bytes())
    raw[4:8] = raw[40:44] = bytes(4)
    path.write_bytes(bytes(raw) + b"\x01\x02\x03")
    return round(recorder.written_ms * 8)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid no longer exists
    return child.pid


def test_calls_of_a_silent_process_are_closed_as_lost_with_their_recording(
    voiceagents_settings, recordings_dir
):
    voiceagents_settings["HEARTBEAT_TIMEOUT"] = 30
    silent = heartbeat("host-a:10:dead", age=31)
    alive = heartbeat("host-b:11:alive", age=5)
    lost = live_call("host-a:10:dead")
    TranscriptEntry.objects.create(call=lost, seq=0, role="agent", text="Hello.")
    running = live_call("host-b:11:alive")
    path = recordings_dir / f"voiceagents-{lost.pk}.wav"
    frames = unfinished_recording(path, 3.0)
    assert frames > 8000  # three seconds of call: all but the last 1.25 s are on disk
    os.utime(path, (time.time() - 31,) * 2)  # untouched since the process stopped

    assert services.recover_lost_calls() == 1

    lost.refresh_from_db()
    assert (lost.status, lost.end_reason) == (CallStatus.FAILED, "lost")
    assert "host-a:10:dead" in lost.error
    assert lost.ended_at == silent.beat_at  # when the process was last known alive
    assert lost.duration == silent.beat_at - lost.answered_at
    assert lost.transcript.count() == 1  # what was written stays
    assert CallEvent.objects.filter(call=lost, kind="status").get().data["to"] == "failed"
    with lost.recording.open("rb") as handle, wave.open(handle) as wav:
        assert (wav.getnchannels(), wav.getnframes()) == (2, frames)
    assert lost.recording_duration == timedelta(milliseconds=frames / 8)
    assert not (recordings_dir / f"voiceagents-{lost.pk}.wav").exists()
    running.refresh_from_db()
    assert running.status == CallStatus.IN_PROGRESS
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == [alive.worker]
    assert services.recover_lost_calls() == 0  # idempotent


def test_a_process_gone_from_this_host_is_lost_at_once(voiceagents_settings, recordings_dir):
    heartbeat("here:gone", host=HOST, pid=dead_pid())  # a fresh heartbeat, but no process
    heartbeat("here:me", host=HOST, pid=os.getpid())  # this process, from before a restart
    heartbeat(ownership.worker_id(), host=HOST, pid=os.getpid())  # this very process
    heartbeat("there:same-pid", pid=dead_pid())  # another host: only its heartbeat tells
    calls = {worker: live_call(worker) for worker in ("here:gone", "here:me", "there:same-pid")}
    mine = live_call(ownership.worker_id())

    assert services.recover_lost_calls() == 2

    for worker, status in [
        ("here:gone", CallStatus.FAILED),
        ("here:me", CallStatus.FAILED),
        ("there:same-pid", CallStatus.IN_PROGRESS),
    ]:
        calls[worker].refresh_from_db()
        assert calls[worker].status == status, worker
    mine.refresh_from_db()
    assert mine.status == CallStatus.IN_PROGRESS


def test_a_recording_still_being_written_is_left_to_its_process(
    voiceagents_settings, recordings_dir
):
    """A process that could not reach the database for a while is not known to be dead: its
    calls are closed, but the file it is still writing is not taken from under it."""
    voiceagents_settings["HEARTBEAT_TIMEOUT"] = 30
    heartbeat("host-a:10:late", age=40)
    call = live_call("host-a:10:late")
    path = recordings_dir / f"voiceagents-{call.pk}.wav"
    unfinished_recording(path, 2.0)  # written just now

    assert services.recover_lost_calls() == 1

    call.refresh_from_db()
    assert (call.status, call.end_reason, call.recording.name) == ("failed", "lost", "")
    assert path.exists()
    os.utime(path, (time.time() - 31,) * 2)  # then the writing stops for good
    assert services.recover_lost_calls() == 0
    call.refresh_from_db()
    assert call.recording and not path.exists()


def test_a_call_closed_by_its_session_meanwhile_is_left_alone(recordings_dir):
    heartbeat("host-a:10:dead", age=3600)
    ended = make_call(status=CallStatus.COMPLETED, worker="host-a:10:dead", end_reason="hangup")
    assert services.recover_lost_calls() == 0
    ended.refresh_from_db()
    assert (ended.status, ended.end_reason) == (CallStatus.COMPLETED, "hangup")


def test_orphaned_temporary_recordings_are_attached_or_removed(recordings_dir):
    old = time.time() - 120

    frames = {}

    def orphan(call_id, *, mtime=old):
        path = recordings_dir / f"voiceagents-{call_id}.wav"
        frames[str(call_id)] = unfinished_recording(path, 2.0)
        os.utime(path, (mtime, mtime))
        return path

    ended = make_call(status=CallStatus.FAILED)
    stored = make_call(status=CallStatus.COMPLETED)
    attach_recording(stored)
    live = make_call(status=CallStatus.IN_PROGRESS)
    recent = make_call(status=CallStatus.FAILED)
    paths = {
        "ended": orphan(ended.pk),
        "stored": orphan(stored.pk),
        "live": orphan(live.pk),
        "recent": orphan(recent.pk, mtime=time.time()),
        "unknown": orphan("6f1c2a4e-0000-4000-8000-000000000000"),
    }
    other = recordings_dir / "someone-else.wav"
    other.write_bytes(b"not ours")

    assert services.clean_recording_tmp() == 3

    ended.refresh_from_db()
    assert ended.recording_duration == timedelta(milliseconds=frames[str(ended.pk)] / 8)
    with ended.recording.open("rb") as handle, wave.open(handle) as wav:
        assert wav.getnframes() == frames[str(ended.pk)]
    assert {name for name, path in paths.items() if path.exists()} == {"live", "recent"}
    assert other.exists()


def test_an_unreadable_orphan_is_kept_not_deleted(recordings_dir, caplog):
    ended = make_call(status=CallStatus.FAILED)
    path = recordings_dir / f"voiceagents-{ended.pk}.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    os.utime(path, (time.time() - 120,) * 2)
    services.clean_recording_tmp()
    assert path.exists()
    assert "cannot keep the recording" in caplog.text


def test_an_empty_orphan_is_removed(recordings_dir):
    ended = make_call(status=CallStatus.FAILED)
    path = recordings_dir / f"voiceagents-{ended.pk}.wav"
    path.write_bytes(b"")  # an older recorder, killed before anything reached the disk
    os.utime(path, (time.time() - 120,) * 2)
    assert services.clean_recording_tmp() == 1
    assert not path.exists()


def test_the_task_and_the_command_run_the_recovery(recordings_dir, capsys):
    heartbeat("host-a:10:dead", age=3600)
    live_call("host-a:10:dead")
    assert tasks.recover_lost_calls.apply().get() == 1
    heartbeat("host-c:12:dead", age=3600)
    live_call("host-c:12:dead")
    call_command("voiceagents_recover_calls")
    assert "Closed 1 lost call(s)." in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
async def test_a_call_held_here_is_claimed_and_the_heartbeat_kept_while_it_lasts(
    voiceagents_settings, recordings_dir
):
    voiceagents_settings["HEARTBEAT_INTERVAL"] = 0.05
    call = await database_sync_to_async(live_call)("")
    row = database_sync_to_async(lambda: WorkerHeartbeat.objects.filter(worker=me).first())
    me = ownership.worker_id()

    ownership.hold(call.pk)
    (heartbeat_task,) = [t for t in asyncio.all_tasks() if t.get_name() == "voiceagents-heartbeat"]
    await eventually(lambda: _worker_of(call.pk), me)
    first = (await row()).beat_at
    await eventually(lambda: _beat_after(me, first), True)  # it keeps beating
    assert (await row()).calls == 1

    ownership.release(call.pk)
    await asyncio.wait_for(heartbeat_task, 5)  # stops with the last call


@database_sync_to_async
def _worker_of(call_id):
    from voiceagents.models import Call

    return Call.objects.get(pk=call_id).worker


@database_sync_to_async
def _beat_after(worker, when):
    return WorkerHeartbeat.objects.filter(worker=worker, beat_at__gt=when).exists()


async def eventually(probe, expected, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await probe()) != expected:
        assert asyncio.get_running_loop().time() < deadline, value
        await asyncio.sleep(0.02)


@pytest.mark.django_db
def test_a_beat_updates_its_row_and_recreates_one_that_was_swept_away():
    ownership.beat("host-d:7:abcd", 2, [])
    first = WorkerHeartbeat.objects.get(worker="host-d:7:abcd")
    ownership.beat("host-d:7:abcd", 3, [])
    again = WorkerHeartbeat.objects.get(worker="host-d:7:abcd")
    assert again.pk == first.pk and again.calls == 3 and again.beat_at >= first.beat_at
    WorkerHeartbeat.objects.all().delete()
    ownership.beat("host-d:7:abcd", 1, [])
    assert WorkerHeartbeat.objects.get(worker="host-d:7:abcd").calls == 1
