"""The calls list and the call page in a real browser: Debian's chromium, driven by playwright.

The list must fit a 1280 px wide screen; on the call page, clicking a turn of the conversation
must seek the recording to that turn (Chromium seeks in a WAV only through byte ranges). The page
is served both by Django's WSGI live server and by uvicorn running the project's ASGI
application, since the recording view streams differently under each.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.browser import BROWSER_MARKS, PASSWORD, launch, log_in, save_screenshot
from tests.voiceagents.factories import (
    add_event,
    add_transcript,
    attach_recording,
    make_agent,
    make_call,
)
from voiceagents.models import CallEventKind, CallStatus, Direction

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")

#: Keeps a promise of the player's position once the next seek has finished (awaited later,
#: after the click that starts the seek).
AWAIT_SEEK = """() => {
    const audio = document.getElementById("call-recording");
    window.seeked = new Promise(resolve => {
        audio.addEventListener("seeked", () => resolve(audio.currentTime), {once: true});
    });
}"""
#: The position once seeked; fails (rather than hangs) if no seek comes.
SEEKED = """() => Promise.race([
    window.seeked,
    new Promise((_, reject) => setTimeout(() => reject(new Error("the player never seeked")), 10000)),
])"""
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(params=["wsgi", "asgi"])
def base_url(request, browser_settings):
    if request.param == "wsgi":
        return request.getfixturevalue("live_server").url
    return request.getfixturevalue("asgi_server")


#: Playwright's waits in the recording test: long enough for a busy 2-core machine.
PATIENCE_MS = 60_000


def conversation_wav(seconds: int, caller: list, agent: list, rate: int = 8000) -> bytes:
    """A stereo WAV with a tone on the caller (left) and agent (right) channel while each speaks."""
    t = np.arange(seconds * rate) / rate
    channels = np.zeros((len(t), 2))
    for column, spans in ((0, caller), (1, agent)):
        for start, end in spans:
            inside = (t >= start) & (t < end)
            channels[inside, column] = 0.3 * np.sin(2 * np.pi * (220 + 110 * column) * t[inside])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((channels * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture
def recorded_call(django_user_model):
    """Ten seconds of stereo recording, the agent's second turn at 4.0 s, and more calls."""
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    agent = make_agent(name="Front desk")
    call = make_call(
        agent=agent,
        provider="openai_realtime",
        from_number="+12025550123",
        to_number="+14155550100",
        end_reason="caller_hangup",
        metrics={"first_agent_audio_ms": 820.0, "response_latency_ms": [640, 910], "barge_ins": 1},
    )
    add_transcript(
        call,
        {"seq": 1, "role": "agent", "text": "Hi, this is Acme Dental.", "start_ms": 0,
         "end_ms": 1800},
        {"seq": 2, "role": "caller", "text": "Can I move my cleaning?", "start_ms": 2500,
         "end_ms": 3500},
        {"seq": 3, "role": "agent", "text": "Of course, which day suits you best?",
         "start_ms": 4000, "end_ms": 5600, "interrupted": True},
        {"seq": 4, "role": "caller", "text": "Thursday, please.", "start_ms": 7000,
         "end_ms": 8200},
    )  # fmt: skip
    add_event(call, CallEventKind.BARGE_IN, at_ms=5600, data={"audio_end_ms": 1600})
    attach_recording(
        call, conversation_wav(10, caller=[(2.5, 3.5), (7.0, 8.2)], agent=[(0, 1.8), (4.0, 5.6)])
    )
    # Wide values, so that the list is tried with what makes it widest.
    make_call(
        agent=make_agent(name="After-hours answering service"),
        direction=Direction.OUTBOUND,
        from_number="+14155550100",
        to_number="+442071838750",
        status=CallStatus.FAILED,
        end_reason="account_mismatch",
    )
    yield call
    default_storage.delete(call.recording.name)


def test_the_calls_list_fits_a_1280_px_screen(live_server, browser_settings, recorded_call):
    path = reverse("admin:voiceagents_call_changelist")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(10_000)
            log_in(page, live_server.url, "root", path)

            # The list scrolls sideways inside its box (between the menu and the filters) when
            # it is too wide: a column is visible if it ends inside that box, on the screen.
            visible_right = min(_right(page.locator("#changelist .results")), VIEWPORT["width"])
            status_right = _right(page.locator("#result_list th.column-status_and_reason"))
            last_column_right = _right(page.locator("#result_list thead th").last)
            cells_right = [
                _right(cell) for cell in page.locator("td.field-status_and_reason").all()
            ]
            overflow = page.evaluate(
                "(box => box.scrollWidth - box.clientWidth)"
                "(document.querySelector('#changelist .results'))"
            )
            statuses = page.locator("td.field-status_and_reason").all_inner_texts()
            durations = page.locator("td.field-length_and_reply").all_inner_texts()
            save_screenshot(page, "calls-list")
        finally:
            browser.close()

    assert status_right <= visible_right
    assert last_column_right <= visible_right
    assert len(cells_right) == 2 and max(cells_right) <= visible_right
    assert overflow <= 0
    assert "completed · caller hung up" in statuses
    # The median reply time of the call that has one (stored as a list only, as old calls are).
    assert any(d.endswith("reply 0.6 s") for d in durations)


def _right(locator) -> float:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return box["x"] + box["width"]


def test_clicking_a_turn_plays_the_recording_from_that_turn(base_url, recorded_call):
    path = reverse("admin:voiceagents_call_change", args=[recorded_call.pk])
    recording_url = reverse("admin:voiceagents_call_recording", args=[recorded_call.pk])
    statuses = []
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            # Patient: on a busy machine Chromium is slow, not wrong.
            page.set_default_timeout(PATIENCE_MS)
            page.on(
                "response",
                lambda r: statuses.append(r.status) if r.url.endswith(recording_url) else None,
            )
            log_in(page, base_url, "root", path)

            turns = page.locator("#call-conversation li.turn")
            sync_api.expect(turns).to_have_count(4, timeout=PATIENCE_MS)
            sync_api.expect(turns.locator(".turn-text")).to_have_text(
                [
                    "Hi, this is Acme Dental.",
                    "Can I move my cleaning?",
                    "Generated by the agent: Of course, which day suits you best?",
                    "Thursday, please.",
                ],
                timeout=PATIENCE_MS,
            )
            at_four = page.locator('li.turn[data-start="4.000"]')
            page.evaluate(AWAIT_SEEK)
            at_four.click()
            first = page.evaluate(SEEKED)
            page.evaluate(AWAIT_SEEK)
            turns.nth(3).locator(".turn-text").click()
            second = page.evaluate(SEEKED)
            duration = page.evaluate("document.getElementById('call-recording').duration")
            save_screenshot(page, "call-page")
        finally:
            browser.close()

    assert first == pytest.approx(4.0, abs=0.2)
    assert second == pytest.approx(7.0, abs=0.2)
    assert duration == pytest.approx(10.0, abs=0.01)
    # Chromium fetched the WAV in ranges and was answered with them.
    assert 206 in statuses


def test_the_conversation_is_readable_without_javascript(
    live_server, browser_settings, recorded_call
):
    path = reverse("admin:voiceagents_call_change", args=[recorded_call.pk])
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
            page = context.new_page()
            page.set_default_timeout(10_000)
            log_in(page, live_server.url, "root", path)

            texts = page.locator("#call-conversation .turn-text").all_inner_texts()
            link = page.locator('li.turn[data-start="4.000"] a.turn-time')
            href = link.get_attribute("href")
            interruption = page.locator(".turn-interruption").inner_text()
            sentences = page.locator("#call-timeline td.event-sentence").all_inner_texts()
        finally:
            browser.close()

    assert texts[1] == "Can I move my cleaning?"
    assert href.endswith("/recording/#t=4.000")
    assert interruption == "The caller cut in after 1.6 s and heard only that much of it."
    assert sentences == ["The caller cut in after hearing 1.6 s of the agent's reply"]


def test_the_quality_section_fits_the_screen(live_server, browser_settings, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    call = make_call(
        provider="openai_realtime",
        metrics={
            "barge_ins": 2,
            "false_interruptions": 1,
            "greeting_latency_ms": 910.0,
            "response_latency_ms": [640.0, 910.0, 720.0],
            "response_latency_ms_p50": 720.0,
            "response_latency_ms_p90": 910.0,
            "response_latency_ms_p95": 910.0,
            "response_latency_ms_max": 910.0,
            "barge_in_clear_ms": [0.4, 1.1],
            "barge_in_cuts": [
                {"at_ms": 4100, "heard_ms": 640, "generated_ms": 2000},
                {"at_ms": 9800, "heard_ms": 150, "generated_ms": 900, "false": True},
            ],
            "network_delay_ms": 48.0,
            "jitter_ms": 80.0,
        },
    )
    path = reverse("admin:voiceagents_call_change", args=[call.pk])
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(10_000)
            log_in(page, live_server.url, "root", path)
            section = page.locator("#call-quality")
            sync_api.expect(section.locator("table.barge-ins tbody tr")).to_have_count(2)
            right = max(_right(table) for table in section.locator("table").all())
            section.screenshot(path=save_screenshot(page, "call-quality"))
        finally:
            browser.close()

    assert right <= VIEWPORT["width"]
