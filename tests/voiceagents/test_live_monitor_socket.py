"""The live monitor's socket in-process: who may open it, what it forwards, and how fast.

Events are put on the real (in-memory) channel layer's monitor group, as calls publish them;
the socket is opened through the project's WebSocket routes with a real session cookie.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.core.cache import cache

from telephony import closecodes
from voiceagents.call.monitor import BATCH_TYPE, MESSAGE_TYPE, MONITOR_GROUP
from voiceagents.monitor import consumer

from .live_monitor import close_code, events_until, monitor_socket, next_event, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def free_slots():
    """Socket slots live in the cache: no test sees another's."""
    cache.clear()
    yield
    cache.clear()


def _user(django_user_model, name, *, staff=True, perms=("view_call",), superuser=False):
    user = django_user_model.objects.create_user(name, password="pw", is_staff=staff)
    if superuser:
        user.is_superuser = True
        user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    return session_cookie(user)


@pytest.fixture
def staff_cookie(django_user_model):
    return _user(django_user_model, "watcher")


async def open_ready(cookie):
    socket = monitor_socket(cookie)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    assert (await next_event(socket))["type"] == "ready"
    return socket


async def publish(event: dict) -> None:
    await get_channel_layer().group_send(MONITOR_GROUP, {"type": MESSAGE_TYPE, "event": event})


async def test_a_staff_member_who_may_view_calls_receives_the_calls_events(staff_cookie):
    cookie = staff_cookie
    socket = await open_ready(cookie)
    line = {"type": "line", "call_id": "c1", "seq": 0, "role": "caller", "text": "Hello?"}
    await publish(line)
    assert await next_event(socket) == line
    await publish({"type": "ended", "call_id": "c1", "status": "completed", "end_reason": "x"})
    assert (await next_event(socket))["type"] == "ended"
    await socket.disconnect()


@pytest.mark.parametrize(
    "who",
    ["anonymous", "not-staff", "staff-without-permission", "inactive-staff"],
)
async def test_anyone_else_is_refused_with_4001(django_user_model, who):
    def make():
        if who == "anonymous":
            return None
        if who == "not-staff":
            return _user(django_user_model, who, staff=False)
        if who == "staff-without-permission":
            return _user(django_user_model, who, perms=())
        cookie = _user(django_user_model, who)
        django_user_model.objects.filter(username=who).update(is_active=False)
        return cookie

    cookie = await sync_to_async(make)()
    socket = monitor_socket(cookie)
    connected, _ = await socket.connect(timeout=5)
    assert connected  # accepted, then closed with a code the page can explain
    assert await close_code(socket) == consumer.FORBIDDEN == closecodes.FORBIDDEN
    await publish({"type": "line", "call_id": "c1", "seq": 0, "role": "caller", "text": "secret"})
    assert await socket.receive_nothing(0.2)


async def test_a_socket_from_another_site_is_refused_before_it_opens(staff_cookie):
    cookie = staff_cookie
    socket = monitor_socket(cookie, origin=b"https://evil.example")
    connected, _ = await socket.connect(timeout=5)
    assert not connected


async def test_a_user_may_hold_only_a_few_sockets_at_once(staff_cookie, voiceagents_settings):
    voiceagents_settings.update(MONITOR_SOCKETS_PER_USER=2)
    cookie = staff_cookie
    first, second = await open_ready(cookie), await open_ready(cookie)
    third = monitor_socket(cookie)
    assert (await third.connect(timeout=5))[0]
    assert await close_code(third) == consumer.TOO_MANY_SOCKETS
    await first.disconnect()
    fourth = await open_ready(cookie)  # the closed socket's slot is free again
    await second.disconnect()
    await fourth.disconnect()


async def test_a_flood_is_sent_at_the_bounded_rate_with_a_notice_of_what_was_skipped(
    staff_cookie, voiceagents_settings
):
    rate = 5
    voiceagents_settings.update(MONITOR_MESSAGES_PER_SECOND=rate)
    cookie = staff_cookie
    socket = await open_ready(cookie)
    loop = asyncio.get_running_loop()
    began = loop.time()
    flood = 100
    for seq in range(flood):
        await publish({"type": "line", "call_id": "busy", "seq": seq, "role": "agent", "text": "x"})
        if seq == 50:
            # Another call starts in the middle of the flood: held, never skipped.
            await publish({"type": "started", "call_id": "new", "carrier": "twilio"})
    events = await events_until(socket, lambda e: e["type"] == "skipped", timeout=10)
    elapsed = loop.time() - began

    lines = [e for e in events if e["type"] == "line"]
    (notice,) = [e for e in events if e["type"] == "skipped"]
    assert notice["call_id"] == "busy"
    assert len(lines) + notice["count"] == flood  # every line sent or counted
    assert len(events) <= rate + rate * elapsed + 1  # a second's burst, then the rate
    assert len(lines) < flood
    assert {"type": "started", "call_id": "new", "carrier": "twilio"} in events
    # The held start went out before the notice, and nothing else is pending.
    assert events.index(next(e for e in events if e["type"] == "started")) < events.index(notice)
    assert await socket.receive_nothing(0.3)
    await socket.disconnect()


async def test_a_malformed_event_is_ignored_and_logged(staff_cookie, caplog):
    cookie = staff_cookie
    socket = await open_ready(cookie)
    await get_channel_layer().group_send(MONITOR_GROUP, {"type": MESSAGE_TYPE, "event": ["x"]})
    await publish({"type": "line", "call_id": "c1", "seq": 0, "role": "caller", "text": "Hi"})
    assert (await next_event(socket))["text"] == "Hi"
    assert "ignored a malformed event" in caplog.text
    await socket.disconnect()


async def test_a_batch_of_events_reaches_the_browser_in_order(staff_cookie, caplog):
    """What ``MonitorOutbox`` sends: the events of a process's calls in one message."""
    socket = await open_ready(staff_cookie)
    events = [
        {"type": "started", "call_id": "c1", "carrier": "twilio", "provider": "openai_realtime"},
        {"type": "line", "call_id": "c2", "seq": 0, "role": "caller", "text": "Hi"},
        ["not", "an", "event"],
        {"type": "ended", "call_id": "c1", "status": "completed", "end_reason": "x"},
    ]
    layer = get_channel_layer()
    await layer.group_send(MONITOR_GROUP, {"type": BATCH_TYPE, "events": "not a list"})
    await layer.group_send(MONITOR_GROUP, {"type": BATCH_TYPE, "events": events})
    assert [await next_event(socket) for _ in range(3)] == [events[0], events[1], events[3]]
    assert "ignored a malformed event" in caplog.text
    assert "ignored a malformed batch" in caplog.text
    await socket.disconnect()


async def test_what_the_browser_sends_is_ignored(staff_cookie):
    cookie = staff_cookie
    socket = await open_ready(cookie)
    await socket.send_to(text_data='{"type": "hangup", "call_id": "c1"}')
    await socket.send_to(bytes_data=b"\x00" * 320)
    assert await socket.receive_nothing(0.2)
    await publish({"type": "line", "call_id": "c1", "seq": 0, "role": "caller", "text": "Hi"})
    assert (await next_event(socket))["text"] == "Hi"
    await socket.disconnect()
