"""The live monitor's socket through real daphne and uvicorn processes: staff get it, anyone else
is closed with 4001 (daphne refuses close codes outside 1000 and 3000-4999), another site's page
is refused at the handshake, and the server logs no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration.conftest import REPO_ROOT
from voiceagents.monitor.consumer import FORBIDDEN, SOCKET_PATH

from .running import SERVERS

#: Run in the server's environment: a staff member and a member who is not, logged in; their
#: session cookies as JSON. Their user names end in argv[1] (the server's database is shared).
MAKE_SESSIONS = """
import json, sys, django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
cookies = {}
for name, staff in (("staff", True), ("member", False)):
    make = get_user_model().objects.create_superuser if staff else get_user_model().objects.create_user
    user = make(name + sys.argv[1], password="pw")
    client = Client()
    client.force_login(user)
    cookies[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
print(json.dumps(cookies))
"""


def sessions(env: dict[str, str], suffix: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", MAKE_SESSIONS, suffix],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_answer(port: int, origin: str, cookie: str | None) -> str | int:
    """The monitor's first frame's type, its close code, or ``"http <status>"`` if refused."""
    headers = {"Origin": origin}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    try:
        with connect(f"ws://127.0.0.1:{port}{SOCKET_PATH}", additional_headers=headers) as ws:
            try:
                return json.loads(ws.recv(timeout=5))["type"]
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else "no close frame"
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


@pytest.mark.parametrize("server", SERVERS)
def test_the_monitor_socket_is_for_staff_only_under_each_server(server, shared_server):
    process = shared_server(server)
    process.seed()
    cookies = sessions(process.env, suffix=f"-{process.agent_slug}")
    port = process.port
    ours = f"http://127.0.0.1:{port}"
    seen = {
        "staff": first_answer(port, ours, cookies["staff"]),
        "member": first_answer(port, ours, cookies["member"]),
        "anonymous": first_answer(port, ours, None),
        "staff-from-another-site": first_answer(port, "https://evil.example", cookies["staff"]),
    }
    assert seen == {
        "staff": "ready",
        "member": FORBIDDEN,
        "anonymous": FORBIDDEN,
        "staff-from-another-site": "http 403",
    }
    process.check_alive()
    log = process.output()
    assert "Traceback" not in log and "invalid close code" not in log, log
