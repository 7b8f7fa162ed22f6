"""channels-redis carries control-plane commands from one OS process to a consumer in another."""

from __future__ import annotations

import json
import sys
import uuid

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from voiceagents.call.control import call_group, send_call_command

from .conftest import subprocess_env

TIMEOUT = 10.0


@pytest.mark.integration
def test_send_call_command_reaches_a_consumer_in_another_process(redis_url, start_process):
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    server = start_process(
        "daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "0", "--no-server-name"]
        + ["tests.integration.control_probe_asgi:application"],
        env=subprocess_env(REDIS_URL=redis_url),
    )
    listening = server.wait_for_output(r"Listening on TCP address 127\.0\.0\.1:(\d+)", TIMEOUT)
    port = int(listening.group(1))
    call_id, other_call_id = uuid.uuid4(), uuid.uuid4()

    url = f"ws://127.0.0.1:{port}/control-probe/{call_id}/"
    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        joined = json.loads(ws.recv(timeout=TIMEOUT))
        assert joined == {"type": "joined", "group": call_group(call_id), "pid": server.pid}

        # A command for another call must not reach this consumer; ours must, from this process.
        send_call_command(other_call_id, "hangup", reason="not for this call")
        send_call_command(call_id, "hangup", reason="test")
        hangup = json.loads(ws.recv(timeout=TIMEOUT))
        assert hangup == {
            "type": "call.hangup",
            "reason": "test",
            "group": call_group(call_id),
            "pid": server.pid,
        }
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000
    server.check_alive()
