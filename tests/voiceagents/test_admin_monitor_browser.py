"""The live monitor in a real browser: Debian's chromium watching a real call, and hanging it up.

The project's ASGI application runs under uvicorn in a thread of this process (the
``asgi_server`` fixture), so it shares the test database. A Twilio call reaches it over a real
WebSocket from the fake Twilio caller, answered by the fake OpenAI Realtime server; both run on
an event loop of their own thread (``LoopThread``), since this thread runs playwright. The page
must show the caller's words as the call goes and end the call with its "Hang up" button; a
member who is not staff gets neither the page nor the socket.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.browser import (
    BROWSER_MARKS,
    PASSWORD,
    SOCKET_CLOSE_CODE,
    launch,
    log_in,
    save_screenshot,
    session_cookie,
)
from tests.calls.conftest import _create_call, signed_headers
from tests.fakes.openai_realtime import FakeOpenAIRealtime, ScriptedResponse
from tests.fakes.twilio_stream import FakeTwilioCaller
from tests.servers.calls import LoopThread
from voiceagents.models import Call, CallStatus
from voiceagents.monitor.consumer import FORBIDDEN, SOCKET_PATH

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")

SAID = "I'd like to book a table for two."
PAGE = reverse("voiceagents:monitor")


@pytest.fixture
def loop_thread():
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def fake_openai(loop_thread):
    fake = FakeOpenAIRealtime()
    loop_thread.run(fake.__aenter__())
    yield fake
    loop_thread.run(fake.__aexit__(None, None, None))


class TwilioLeg:
    """The caller's side of one Twilio call to ``server``, driven from ``loop_thread``."""

    def __init__(self, loop_thread: LoopThread, server: str, setup):
        self.loop_thread, self.setup = loop_thread, setup
        self.url = server.replace("http://", "ws://") + "/telephony/twilio/media/"
        self.caller: FakeTwilioCaller | None = None

    def start(self) -> None:
        self.loop_thread.run(self._start())

    async def _start(self) -> None:
        # Signed for the public URL, as Twilio would (tests/settings.py's PUBLIC_URL).
        headers = [(k.decode(), v.decode()) for k, v in signed_headers() if k != b"host"]
        self.socket = await connect(self.url, additional_headers=headers)

        async def receive(timeout: float) -> str | None:
            try:
                return await asyncio.wait_for(self.socket.recv(), timeout)
            except ConnectionClosed:
                return None

        self.caller = FakeTwilioCaller(
            self.socket.send, receive, call_sid=self.setup.call.carrier_call_id
        )
        await self.caller.connected()
        await self.caller.start(self.setup.parameters)
        await self.caller.media(b"\x7f" * 160)

    def wait_closed(self) -> None:
        self.loop_thread.run(asyncio.wait_for(self.caller.closed.wait(), 10), timeout=15)

    def close(self) -> None:
        if self.caller is not None:
            self.loop_thread.run(self.caller.aclose())
            self.loop_thread.run(self.socket.close())


def caller_says(loop_thread, fake: FakeOpenAIRealtime, text: str) -> None:
    async def say():
        await fake.wait_for(lambda: fake.sessions)
        item = await fake.speech_started()
        await fake.speech_stopped(item, audio_end_ms=1500)
        await fake.caller_transcript(item, text)

    loop_thread.run(say())


def test_the_monitor_shows_a_live_calls_words_and_hangs_it_up(
    asgi_server,
    browser_settings,
    recordings_dir,
    loop_thread,
    fake_openai,
    django_user_model,
):
    # The database is set up before playwright starts: its sync API runs an event loop in this
    # thread, and Django refuses ORM calls from inside one. The call rings later, from the
    # other thread, while the page is open.
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    leg = None

    try:
        with sync_api.sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                log_in(page, asgi_server, "ada", PAGE)
                sync_api.expect(page.locator("#monitor-connection")).to_have_attribute(
                    "data-state", "live"
                )
                sync_api.expect(page.locator("#no-calls")).to_be_visible()

                setup = loop_thread.run(
                    database_sync_to_async(_create_call)(fake_openai.url, name="Booking desk")
                )
                call_id = str(setup.call.pk)
                leg = TwilioLeg(loop_thread, asgi_server, setup)
                leg.start()
                # A new call appears without a reload, once its stream has started.
                card = page.locator(f'li.call[data-call-id="{call_id}"]')
                sync_api.expect(card.locator(".status")).to_have_attribute(
                    "data-status", "in_progress"
                )
                caller_says(loop_thread, fake_openai, SAID)
                line = card.locator('.lines li[data-role="caller"]')
                sync_api.expect(line.locator(".text")).to_have_text(SAID)
                sync_api.expect(card.locator(".lines li", has_text="Agent")).not_to_have_count(0)
                # A reply: its line brings the call's quality so far to the card's header.
                loop_thread.run(fake_openai.respond(ScriptedResponse(b"\x7f" * 800, "Sure.")))
                sync_api.expect(card.locator(".lines li", has_text="Sure.")).to_have_count(1)
                sync_api.expect(card.locator("header .figures")).to_have_text(
                    # (the greeting may have been cut off by the caller's words: timing)
                    re.compile(r"^reply \d+\.\d s \(median of 1\)( · 1 barge-in)?$")
                )
                save_screenshot(page, "live-monitor")

                card.get_by_role("button", name="Hang up").click()
                leg.wait_closed()
                sync_api.expect(card).to_have_attribute("data-live", "false")
                sync_api.expect(card.locator(".status")).to_have_text("Completed: operator hangup")
                sync_api.expect(card.get_by_role("button", name="Hang up")).to_have_count(0)
                save_screenshot(page, "live-monitor-ended")
            finally:
                browser.close()
    finally:
        if leg is not None:
            leg.close()

    call = Call.objects.get(pk=call_id)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "operator_hangup")
    assert call.transcript.filter(role="caller", text=SAID).exists()


def test_a_member_who_is_not_staff_gets_neither_the_page_nor_the_socket(
    asgi_server,
    browser_settings,
    django_user_model,
):
    user = django_user_model.objects.create_user("bob", password=PASSWORD, is_staff=False)
    cookie = session_cookie(user, asgi_server)

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context()
            context.add_cookies([cookie])
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(asgi_server + PAGE)
            landed = page.url
            # Logged in, as the login page says (not an anonymous visitor).
            notice = page.locator("p.errornote").text_content()
            has_monitor = page.locator("#live-monitor").count()
            code = page.evaluate(SOCKET_CLOSE_CODE, SOCKET_PATH)
        finally:
            browser.close()

    assert landed.startswith(asgi_server + reverse("admin:login"))
    assert "You are authenticated as bob, but are not authorized" in " ".join(notice.split())
    assert has_monitor == 0
    assert code == FORBIDDEN
