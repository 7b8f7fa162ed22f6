"""The browser test call in a real browser: Debian's chromium, with a WAV file as its microphone.

A staff member opens "Test call" from an agent's admin page and talks to a pipeline agent whose
stages are loopback fakes (Deepgram transcribes the WAV's burst of speech as the words it was
told, ElevenLabs speaks the reply as a tone). The project's ASGI application is served by uvicorn
in a thread of this process, so it shares the test database and the reply handler registered
here. The page must show the caller's words and the reply, and count the agent's audio; the call
is a ``Call`` row of the ``browser`` carrier. A logged-in member who is not staff gets neither
the page nor the media socket.
"""

from __future__ import annotations

import asyncio
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

import voiceagents
from tests.browser import BROWSER_MARKS, PASSWORD, SOCKET_CLOSE_CODE, log_in, session_cookie
from tests.browser import launch as launch_chromium
from tests.fakes import deepgram as fake_deepgram
from tests.fakes import elevenlabs_api as fake_elevenlabs
from tests.voiceagents.audio.signals import voiced
from voiceagents.models import Agent, Call, CallStatus, Credential

#: On top of tests/browser.py's: play without a gesture, take the fake microphone without asking.
MEDIA_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SAID = "book a table for two"
REPLY = f"I heard you say: {SAID}"
pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")


@voiceagents.reply_handler("browser-call-tests-echo")
async def heard_you(event):
    return f"I heard you say: {event['text']}"


# -- the fakes and the microphone ----------------------------------------------------------------


@pytest.fixture
def deepgram():
    """The Deepgram fake on an event loop of its own thread (the test's thread runs playwright)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    async def serve():
        async with fake_deepgram.FakeDeepgram() as fake:
            holder["fake"], holder["stop"] = fake, asyncio.Event()
            ready.set()
            await holder["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the Deepgram fake did not start"
    yield holder["fake"]
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(10)
    loop.close()


@pytest.fixture
def elevenlabs():
    with fake_elevenlabs.FakeElevenLabsAPI() as fake:
        yield fake


@pytest.fixture
def microphone(tmp_path) -> Path:
    """A WAV the fake microphone plays in a loop: 0.8 s of a voice, then 2 s of silence."""
    rate = 16000
    samples = np.concatenate((voiced(rate, 0.8), np.zeros(2 * rate, dtype=np.int16)))
    path = tmp_path / "caller.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def _credential(vendor: str, secret: str) -> Credential:
    credential = Credential(vendor=vendor, label=vendor)
    credential.secret = secret
    credential.save()
    return credential


@pytest.fixture
def pipeline_agent(voiceagents_settings, recordings_dir, deepgram, elevenlabs) -> Agent:
    voiceagents_settings.update(DEEPGRAM_URL=deepgram.url, ELEVENLABS_URL=elevenlabs.url)
    agent = Agent(
        name="Booking desk",
        slug="booking-desk",
        provider="pipeline",
        first_message="",
        stt_provider="deepgram",
        stt_credential=_credential("deepgram", "dg-test-key"),
        tts_provider="elevenlabs",
        tts_credential=_credential("elevenlabs", fake_elevenlabs.API_KEY),
        reply_handler="browser-call-tests-echo",
        record_calls=True,
    )
    agent.full_clean()
    agent.save()
    return agent


def launch(playwright, microphone: Path):
    return launch_chromium(
        playwright, *MEDIA_ARGS, f"--use-file-for-fake-audio-capture={microphone}"
    )


# -- the tests ----------------------------------------------------------------------------------


def test_a_staff_member_talks_to_the_agent_from_the_admin(
    asgi_server, pipeline_agent, deepgram, elevenlabs, microphone, django_user_model
):
    # The database is set up before playwright starts: its sync API runs an event loop in this
    # thread, and Django refuses ORM calls from inside one.
    django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    deepgram.transcribe_next(SAID)
    agent_path = reverse("admin:voiceagents_agent_change", args=[pipeline_agent.pk])
    call_page = asgi_server + reverse("telephony:browser_call", args=[pipeline_agent.pk])

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, microphone)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            log_in(page, asgi_server, "ada", agent_path)

            page.click("#test-call-link")
            page.wait_for_url(call_page)
            page.click("#call-button")
            sync_api.expect(page.locator("#call-status")).to_have_attribute("data-state", "live")

            transcript = page.locator("#transcript li")
            sync_api.expect(transcript.filter(has_text=SAID).first).to_have_attribute(
                "data-role", "caller"
            )
            sync_api.expect(transcript.filter(has_text=REPLY).first).to_have_attribute(
                "data-role", "agent"
            )
            page.wait_for_function(
                "() => Number(document.getElementById('agent-audio').dataset.bytes) >= 16000"
            )
            agent_bytes = int(page.locator("#agent-audio").get_attribute("data-bytes"))

            page.click("#call-button")  # hang up
            sync_api.expect(page.locator("#call-status")).to_have_attribute("data-state", "ended")
            call_href = page.locator("#call-link a").get_attribute("href")
        finally:
            browser.close()

    (call,) = Call.objects.all()
    assert call.carrier == "browser" and call.from_number == "browser:ada"
    assert call.status == CallStatus.COMPLETED and call.end_reason == "caller_hangup"
    assert call_href == reverse("admin:voiceagents_call_change", args=[call.pk])
    texts = list(call.transcript.order_by("seq").values_list("role", "text"))
    assert ("caller", SAID) in texts and ("agent", REPLY) in texts
    # The reply's audio is ElevenLabs' PCM at 16 kHz, as the browser carrier streams it.
    request = next(r for r in elevenlabs.tts_requests if r.json["text"] == REPLY)
    assert request.query["output_format"] == "pcm_16000"
    assert agent_bytes >= 16000
    assert call.recording


def test_a_member_who_is_not_staff_gets_neither_the_page_nor_the_socket(
    asgi_server, pipeline_agent, microphone, django_user_model
):
    user = django_user_model.objects.create_user("bob", password=PASSWORD, is_staff=False)
    cookie = session_cookie(user, asgi_server)
    call_page = asgi_server + reverse("telephony:browser_call", args=[pipeline_agent.pk])
    media_path = "/telephony/browser/media/"

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, microphone)
        try:
            context = browser.new_context()
            context.add_cookies([cookie])
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(call_page)
            landed = page.url
            # Logged in, as the login page says (not an anonymous visitor).
            notice = page.locator("p.errornote").text_content()
            has_button = page.locator("#call-button").count()
            code = page.evaluate(SOCKET_CLOSE_CODE, media_path)
        finally:
            browser.close()

    assert landed.startswith(asgi_server + reverse("admin:login"))
    assert "You are authenticated as bob, but are not authorized" in " ".join(notice.split())
    assert has_button == 0
    assert code == 4001
    assert not Call.objects.exists()
