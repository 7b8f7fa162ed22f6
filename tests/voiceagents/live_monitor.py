"""The live monitor's socket as tests open it: Channels' communicator on the project's routes.

``monitor_socket(cookie)`` opens ``/voiceagents/monitor/`` through ``telephony.routing`` (so with
its session authentication and ``Origin`` check), as a browser on ``http://testserver`` would;
``session_cookie(user)`` logs ``user`` in and returns the session cookie to send.
"""

from __future__ import annotations

import json

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from voiceagents.monitor.consumer import SOCKET_PATH

ORIGIN = b"http://testserver"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def monitor_socket(cookie: str | None, origin: bytes | None = ORIGIN) -> WebsocketCommunicator:
    from telephony.routing import websocket_urlpatterns

    headers = []
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), SOCKET_PATH, headers=headers)


async def close_code(socket: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """The code the server closes an accepted socket with (``None``: it sent a frame instead)."""
    message = await socket.receive_output(timeout)
    if message["type"] == "websocket.close":
        return message.get("code", 1000)
    return None


async def next_event(socket: WebsocketCommunicator, timeout: float = 5) -> dict:
    return json.loads(await socket.receive_from(timeout))


async def events_until(socket, done, timeout: float = 10) -> list[dict]:
    """Events received until ``done(event)`` is true for one (included)."""
    seen = []
    while True:
        event = await next_event(socket, timeout)
        seen.append(event)
        if done(event):
            return seen
