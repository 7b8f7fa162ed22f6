"""A call refused at stream start, through real daphne and uvicorn processes: the carrier sees
4004 and the call's row in the server's own database is failed with its reason, not ringing."""

from __future__ import annotations

import sqlite3

import pytest

from telephony import closecodes

from .calls import call_row, run_call
from .running import SERVERS


@pytest.mark.parametrize("server", SERVERS)
def test_a_call_whose_agent_was_disabled_fails_with_its_reason(server, shared_server):
    process = shared_server(server)
    (call,) = process.seed(openai_url="ws://127.0.0.1:9/v1/realtime", calls=1)
    with sqlite3.connect(process.db) as db:
        db.execute("update voiceagents_agent set enabled = 0 where slug = ?", (process.agent_slug,))

    received, code = run_call(process.port, call, hang_up_after=None)

    assert (received, code) == (b"", closecodes.CALL_UNAVAILABLE)
    row = call_row(process.dir, call["call_id"])
    assert (row["status"], row["end_reason"]) == ("failed", "agent_disabled")
    assert "was disabled before the call connected" in row["error"]
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log, log
    assert "failed before its agent was connected: agent_disabled" in log, log
