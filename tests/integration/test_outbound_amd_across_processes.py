"""An outbound call's answering-machine verdict lands on one server process and reaches the call
held by another: uvicorn holds the media stream, daphne takes Twilio's signed AMD callback, and
channels-redis carries the control plane's ``amd`` command between them (they share the SQLite
database file, as processes of one site share their database)."""

from __future__ import annotations

import json
import sqlite3
import threading
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest
from twilio.request_validator import RequestValidator

from tests.fakes.openai_realtime import FakeOpenAIRealtime
from tests.servers.calls import LoopThread, call_row, run_call
from tests.servers.running import PUBLIC_URL, seed, server_env, start_server
from tests.servers.seed import AUTH_TOKEN

ACCOUNT_SID = "AC" + "c" * 32  # tests/servers/seed.py


def _make_outbound(tmp_path, call_id: str) -> None:
    """The seeded call, as place_call leaves an outbound call with AMD (hang up on machines)."""
    options = {"amd": True, "machine_action": "hangup", "first_message": None, "variables": {}}
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        db.execute(
            "update voiceagents_call set direction = 'outbound', outbound_options = ? where id = ?",
            (json.dumps(options), call_id.replace("-", "")),
        )


@pytest.mark.integration
def test_amd_verdict_posted_to_another_process_ends_the_call(tmp_path, redis_url, start_process):
    loop = LoopThread()
    fake = loop.run(FakeOpenAIRealtime().__aenter__())
    try:
        env = server_env(tmp_path, redis_url=redis_url, VOICEAGENTS_OUTBOUND_AMD_TIMEOUT="60")
        (call,) = seed(env, openai_url=fake.url, calls=1)
        _make_outbound(tmp_path, call["call_id"])
        media_port, media = start_server(start_process, "uvicorn", env)
        webhook_port, _ = start_server(start_process, "daphne", env)

        outcome: dict = {}
        stream = threading.Thread(
            target=lambda: outcome.update(result=run_call(media_port, call, hang_up_after=None)),
            daemon=True,
        )
        stream.start()
        # The session waits for the verdict once the provider is open (and has read the row).
        loop.run(fake.wait_for(lambda: fake.events_of("session.update"), timeout=15), 20)
        media.wait_for_output(r"provider connected", timeout=10)

        path = f"/telephony/twilio/amd/?call_id={call['call_id']}"
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call["call_sid"],
            "AnsweredBy": "machine_start",
            "MachineDetectionDuration": "1800",
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, params)
        request = Request(
            f"http://127.0.0.1:{webhook_port}{path}",
            data=urlencode(params).encode(),
            headers={
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            method="POST",
        )
        with urlopen(request, timeout=10) as response:
            assert response.status == 204

        stream.join(20)
        assert not stream.is_alive(), "the media stream was not closed"
        received, _ = outcome["result"]
        row = call_row(tmp_path, call["call_id"])
        assert (row["status"], row["end_reason"]) == ("completed", "machine_hangup")
        assert received == b""  # the agent never spoke
        assert fake.events_of("response.create") == []
        # It came over the channel layer: the uvicorn process got the command, not the row.
        media.wait_for_output(r"answering-machine detection: machine_start", timeout=5)
    finally:
        loop.run(fake.__aexit__(None, None, None))
        loop.stop()
