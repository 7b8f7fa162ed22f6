"""A Redis restart does not drop live calls: a real uvicorn process on its own redis-server.

The test starts its own redis-server on a free port (never the shared one), a uvicorn process of
the project's ASGI app with channels-redis on it, and the fake OpenAI in this process. A Twilio
call streams both ways; Redis is stopped for ~4 s and started again; the call must still stream,
a new call must start, and the admin's hang-up (``voiceagents.call.control``) sent from this process
must reach the first call. On the old consumer the first call died with the outage (1006) and the
row stayed ``in_progress``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.fakes.twilio_stream import FakeTwilioCaller
from tests.servers.running import PUBLIC_URL, seed, server_env, start_server
from tests.servers.seed import AUTH_TOKEN
from voiceagents.call import streamtokens
from voiceagents.call.control import asend_call_command

from .conftest import _skip_or_fail, free_port

MEDIA_PATH = "/telephony/twilio/media/"
OUTAGE_S = 4.0


def start_redis(start_process, port: int):
    redis = start_process(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no"],
    )
    redis.wait_for_output(r"Ready to accept connections", timeout=15)
    return redis


class Caller:
    """The fake Twilio caller over a real WebSocket to the server."""

    def __init__(self, ws, call: dict):
        self.ws = ws
        self.call = call
        self.fake = FakeTwilioCaller(ws.send, self._receive, call_sid=call["call_sid"])

    async def _receive(self, timeout: float):
        try:
            return await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed:
            return None

    async def start(self):
        params = {"call_id": self.call["call_id"]}
        params["stream_token"] = streamtokens.mint(self.call["call_id"])
        await self.fake.connected()
        await self.fake.start(params, call_sid=self.call["call_sid"])


async def open_call(port: int, call: dict) -> Caller:
    url = PUBLIC_URL.replace("https://", "wss://") + MEDIA_PATH
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    ws = await connect(
        f"ws://127.0.0.1:{port}{MEDIA_PATH}", additional_headers={"X-Twilio-Signature": signature}
    )
    caller = Caller(ws, call)
    await caller.start()
    return caller


async def both_ways(caller: Caller, fake_openai: FakeOpenAIRealtime, session) -> None:
    before = len(session.audio_in)
    await caller.fake.stream_audio(b"\x11" * 800, realtime=False)
    await fake_openai.wait_for(lambda: len(session.audio_in) >= before + 800, timeout=10)
    heard = len(caller.fake.media_in)
    fake_openai.sessions.remove(session)
    fake_openai.sessions.append(session)  # respond() speaks on the last session
    await fake_openai.respond(ScriptedResponse(audio=b"\x2a" * 800, transcript="Still here."))
    await fake_openai.wait_for(lambda: len(caller.fake.media_in) > heard, timeout=10)


def call_row(db_path, call_id: str) -> tuple:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT status, end_reason, ended_at FROM voiceagents_call WHERE id = ?",
            (uuid.UUID(call_id).hex,),
        ).fetchone()


@pytest.mark.integration
async def test_live_calls_survive_a_redis_restart(redis_url, start_process, tmp_path, settings):
    if shutil.which("redis-server") is None:
        _skip_or_fail("needs redis-server on the PATH")
    redis_port = free_port()
    own_redis = f"redis://127.0.0.1:{redis_port}/0"
    redis = await asyncio.to_thread(start_redis, start_process, redis_port)
    # This process's channel layer (the admin's side) on the test's own Redis too.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": own_redis, "socket_timeout": None}]},
        }
    }
    async with FakeOpenAIRealtime() as fake_openai:
        env = server_env(tmp_path, redis_url=own_redis)
        first, second = await asyncio.to_thread(seed, env, openai_url=fake_openai.url, calls=2)
        port, server = await asyncio.to_thread(start_server, start_process, "uvicorn", env)

        caller = await open_call(port, first)
        await fake_openai.wait_for(lambda: fake_openai.session_ready.is_set(), timeout=10)
        session = fake_openai.session
        await both_ways(caller, fake_openai, session)

        await asyncio.to_thread(redis.stop)
        # The call streams on through the outage (real time: 4 s of caller audio).
        before = len(session.audio_in)
        await caller.fake.stream_audio(b"\x22" * int(OUTAGE_S * 8000), realtime=True)
        assert len(session.audio_in) >= before + int(OUTAGE_S * 8000) - 800
        assert not caller.fake.closed.is_set()
        await asyncio.to_thread(start_redis, start_process, redis_port)

        await both_ways(caller, fake_openai, session)
        other = await open_call(port, second)
        await fake_openai.wait_for(lambda: len(fake_openai.sessions) == 2, timeout=10)
        await both_ways(other, fake_openai, fake_openai.sessions[-1])

        # The admin's hang-up reaches the first call once its listener has joined again.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not caller.fake.closed.is_set():
            assert loop.time() < deadline, "the hang-up never reached the call"
            try:
                await asend_call_command(first["call_id"], "hangup", reason="operator_hangup")
            except Exception:  # noqa: BLE001 - this process's layer reconnecting
                pass
            try:
                await asyncio.wait_for(caller.fake.closed.wait(), 1.0)
            except TimeoutError:
                pass

        db_path = tmp_path / "db.sqlite3"
        for _ in range(100):
            row = call_row(db_path, first["call_id"])
            if row[2] is not None:
                break
            await asyncio.sleep(0.05)
        assert row[:2] == ("completed", "operator_hangup")
        await other.fake.stop()
        await asyncio.wait_for(other.fake.closed.wait(), 10)
        for each in (caller, other):
            await each.fake.aclose()
            await each.ws.close()
        server.check_alive()
