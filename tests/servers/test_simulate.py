"""``manage.py voiceagents_call_simulate`` against a real server process, as a user runs it.

The server (daphne, as ``make demo`` runs it, and uvicorn) answers with a pipeline agent: the
Deepgram fake hears the caller, the ``demo`` reply handler answers, the ElevenLabs fake speaks.
The command runs in a subprocess of its own with the server's settings and database, plays a
WAV file as the caller and must print both sides of the conversation.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import wave

import numpy as np
import pytest

from tests.integration.conftest import REPO_ROOT, free_port
from tests.voiceagents.audio.signals import rms, voiced

from .running import SERVERS, seed, server_env
from .test_pipeline_calls import fakes  # noqa: F401  (the fixture)


def voiced_wav(path, rate: int = 16000) -> None:
    """A second of a vowel-like sound and half a second of silence, 16-bit mono at ``rate``."""
    samples = np.concatenate((voiced(rate, 1.0), np.zeros(rate // 2, dtype=np.int16)))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def answer_with_the_demo_handler(db_path, slug: str = "servers") -> None:
    """The seeded agent replies with the ``demo`` handler instead of an LLM prompt."""
    with sqlite3.connect(db_path) as db:
        db.execute(
            "update voiceagents_agent set reply_handler = 'demo', reply_prompt = '' where slug = ?",
            (slug,),
        )


def simulate(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "voiceagents_call_simulate", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("server", SERVERS)
def test_a_simulated_caller_talks_to_the_agent(server, shared_server, tmp_path, fakes):  # noqa: F811
    process = shared_server(server)
    env, port = process.env, process.port
    process.seed(pipeline=fakes.urls())
    answer_with_the_demo_handler(process.db, process.agent_slug)
    fakes.deepgram.transcribe_next("is anybody there")
    speech, out = tmp_path / "caller.wav", tmp_path / "agent.wav"
    voiced_wav(speech)

    done = simulate(
        env,
        "--agent", process.agent_name,  # by its name ("Servers <n>"; its slug is "servers-<n>")
        "--wav", str(speech),
        "--server", f"http://127.0.0.1:{port}",
        "--out", str(out),
    )  # fmt: skip

    printed = done.stdout
    assert done.returncode == 0, printed + done.stderr
    lines = printed.splitlines()
    assert "agent: Hello." in lines
    assert f"caller: [plays {speech}, 1.5 s]" in lines
    assert "caller (transcribed): is anybody there" in lines
    assert "agent: You said: is anybody there." in lines
    assert lines.index("agent: Hello.") < lines.index("agent: You said: is anybody there.")
    (call_line,) = [line for line in lines if line.startswith("Call ")]
    assert call_line.endswith("completed (caller_hangup)") or ": completed (caller_hangup," in (
        call_line
    )
    call_id = call_line.split()[1].rstrip(":")
    assert f"Admin: http://127.0.0.1:{port}/admin/voiceagents/call/{call_id}/change/" in lines
    # The caller's audio reached the agent's speech-to-text, converted to 8 kHz μ-law.
    assert fakes.deepgram.stream.params["encoding"] == "mulaw"
    # Both spoken texts came back as audio, saved as 8 kHz PCM.
    assert [r.json["text"] for r in fakes.tts.tts_requests] == [
        "Hello.",
        "You said: is anybody there.",
    ]
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        agent = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert agent.size > 8000 * 0.2 and rms(agent) > 1000
    process.check_alive()
    assert "Traceback" not in process.output(), process.output()


def test_against_a_make_demo_server(start_process, tmp_path, fakes):  # noqa: F811
    """The shape of ``make demo``: the example project's own settings, ``runserver`` with the
    public URL that the Makefile gives it, and the command run without one (it signs for
    ``--server``)."""
    env = server_env(
        tmp_path, DJANGO_SETTINGS_MODULE="patter_site.settings", MEDIA_ROOT=str(tmp_path)
    )
    env.pop("VOICEAGENTS_PUBLIC_URL", None)
    seed(env, pipeline=fakes.urls())
    answer_with_the_demo_handler(tmp_path / "db.sqlite3")
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    process = start_process(
        "runserver",
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env={**env, "VOICEAGENTS_PUBLIC_URL": server},
    )
    process.wait_for_output(r"Listening on TCP address|development server at", timeout=30)
    fakes.deepgram.transcribe_next("hello there")
    speech = tmp_path / "caller.wav"
    voiced_wav(speech, rate=8000)

    out = tmp_path / "agent.wav"
    done = simulate(
        env, "--agent", "servers", "--wav", str(speech), "--server", server, "--out", str(out)
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent: You said: hello there." in done.stdout.splitlines()
    assert out.stat().st_size > 44
    process.check_alive()


def test_make_demo_then_a_spoken_hello_to_the_offline_demo_agent(start_process, tmp_path):
    """The README's commands, verbatim, with the offline voices: no fake, no network, no key."""
    pytest.importorskip("voiceagents.pipeline.local_stt")
    pytest.importorskip("voiceagents.pipeline.local_tts")
    env = server_env(
        tmp_path, DJANGO_SETTINGS_MODULE="patter_site.settings", MEDIA_ROOT=str(tmp_path)
    )
    env.pop("VOICEAGENTS_PUBLIC_URL", None)
    for command in (["migrate", "--no-input"], ["voiceagents_demo"]):
        made = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    process = start_process(
        "runserver",
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env={**env, "VOICEAGENTS_PUBLIC_URL": server},
    )
    process.wait_for_output(r"Listening on TCP address|development server at", timeout=30)
    out = tmp_path / "agent.wav"

    done = simulate(
        env, "--agent", "Offline demo", "--say", "hello", "--server", server, "--out", str(out)
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "agent: Hello! This is the offline demo agent. Say something and I will answer." in lines
    assert "caller: hello" in lines
    assert any(line.startswith("caller (transcribed): ") for line in lines), lines
    assert any(line.startswith("agent: You said: ") for line in lines), lines
    process.check_alive()


def test_no_server_is_a_clear_error(tmp_path):
    env = server_env(tmp_path)
    seed(env)

    done = simulate(env, "--agent", "servers", "--server", f"http://127.0.0.1:{free_port()}")
    assert done.returncode != 0
    assert "No server answers at http://127.0.0.1:" in done.stderr
    assert "make demo" in done.stderr
