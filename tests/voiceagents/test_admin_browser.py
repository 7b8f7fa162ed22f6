"""The admin in a real browser: Debian's chromium, driven by playwright, against live_server."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.browser import BROWSER_MARKS, PASSWORD, launch, log_in
from tests.voiceagents.factories import (
    add_transcript,
    attach_recording,
    make_agent,
    make_call,
    make_credential,
)

SECRET = "sk-BROW-SERS-ECRE-T9xq-Lm4P"
#: Resolves with the element's duration once the browser has fetched and parsed the audio.
LOAD_METADATA = """el => new Promise((resolve, reject) => {
    el.addEventListener("loadedmetadata", () => resolve(el.duration), {once: true});
    el.addEventListener("error", () => reject(new Error("audio error " + el.error?.code)));
    el.preload = "metadata";
    el.load();
})"""

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")


def test_superuser_sees_the_call_transcript_and_player_and_never_the_secret_in_a_browser(
    live_server, browser_settings, django_user_model, tmp_path
):
    # Everything the database needs happens before the browser starts: playwright's sync API
    # runs an event loop in this thread, and Django refuses ORM calls from inside one.
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    credential = make_credential("openai", secret=SECRET)
    call = make_call(agent=make_agent(credential=credential), from_number="+12025550123")
    add_transcript(
        call,
        {"seq": 2, "role": "caller", "text": "Can I move my cleaning?", "start_ms": 2100},
        {"seq": 1, "role": "agent", "text": "Hi, this is Acme Dental.", "start_ms": 0},
        {"seq": 3, "role": "agent", "text": "Of course, which day", "interrupted": True},
    )
    wav = attach_recording(call)
    call_path = reverse("admin:voiceagents_call_change", args=[call.pk])
    recording_url = reverse("admin:voiceagents_call_recording", args=[call.pk])
    credential_url = live_server.url + reverse(
        "admin:voiceagents_credential_change", args=[credential.pk]
    )
    screenshot = tmp_path / "call.png"

    try:
        with sync_api.sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(10_000)

                log_in(page, live_server.url, "root", call_path)

                turns = page.locator("#call-conversation li.turn")
                sync_api.expect(turns).to_have_count(3)
                sync_api.expect(turns.locator(".speaker")).to_have_text(
                    ["Agent", "Caller", "Agent"]
                )
                sync_api.expect(turns.locator(".turn-text")).to_have_text(
                    [
                        "Hi, this is Acme Dental.",
                        "Can I move my cleaning?",
                        "Text kept: Of course, which day",
                    ]
                )
                sync_api.expect(turns.nth(2).locator(".turn-badge")).to_have_text("interrupted")
                audio = page.locator("audio[controls]")
                sync_api.expect(audio).to_be_visible()
                sync_api.expect(audio).to_have_attribute("src", recording_url)
                # The player's source answers with the WAV to this logged-in browser session,
                # and chromium decodes it: 160 frames at 8 kHz.
                played = page.request.get(live_server.url + recording_url)
                assert played.status == 200
                assert played.body() == wav
                duration = audio.evaluate(LOAD_METADATA)
                # The admin's stylesheet is served too, so the page renders styled.
                assert page.request.get(live_server.url + "/static/admin/css/base.css").ok

                page.screenshot(path=screenshot, full_page=True)

                page.goto(credential_url)
                sync_api.expect(page.locator("div.field-secret_hint_display")).to_contain_text(
                    "••••" + SECRET[-4:]
                )
                html = page.content()
                secret_input = page.locator("input[name=secret]")
                secret_value = secret_input.input_value()
                secret_type = secret_input.get_attribute("type")
            finally:
                browser.close()
    finally:
        default_storage.delete(call.recording.name)

    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000
    assert SECRET not in html
    assert SECRET[:-4] not in html
    assert not [SECRET[i : i + 5] for i in range(len(SECRET) - 4) if SECRET[i : i + 5] in html]
    assert (secret_type, secret_value) == ("password", "")
    assert duration == pytest.approx(160 / 8000)
