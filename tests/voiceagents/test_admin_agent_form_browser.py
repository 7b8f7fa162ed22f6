"""The agent form in a real browser: the chosen voice architecture's sections only, each
service's own voices, errors next to their fields, and the same form working without JavaScript.

Screenshots of the form for each architecture go to var/screenshots/agent-form-<id>.png.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser import BROWSER_MARKS, PASSWORD, launch, log_in, save_screenshot
from tests.voiceagents.factories import make_credential
from voiceagents.models import Agent
from voiceagents.providers.stages import OPENAI_REALTIME_VOICES

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")

VOICE_ID = "Zx9voiceIdOfMyOwn001"
SECTIONS = ("Instructions and voice", "The agent on ElevenLabs", "Pipeline")
#: Architecture → the sections it shows, of SECTIONS.
SHOWN = {
    "openai_realtime": {"Instructions and voice"},
    "elevenlabs_convai": {"Instructions and voice", "The agent on ElevenLabs"},
    "pipeline": {"Pipeline"},
}
#: The values of a select the person can see: those outside a hidden group.
VISIBLE_OPTIONS = """select => Array.from(select.options)
    .filter(o => !(o.parentElement.tagName === "OPTGROUP" && o.parentElement.hidden))
    .map(o => o.value)"""
#: The page's height at the admin's usual width; before the per-architecture form: 3,314 px.
WIDTH = 1280
MAX_HEIGHT = 2400


@pytest.fixture
def root(django_user_model, monkeypatch):
    for name in ("OPENAI_API_KEY", "ELEVENLABS_API_KEY", "DEEPGRAM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)


def section(page, title):
    return page.locator("fieldset", has=page.locator("h2", has_text=title))


def test_switching_architecture_shows_only_its_sections_and_its_services_voices(
    live_server, browser_settings, root
):
    # The database is set up before playwright starts its event loop in this thread.
    make_credential("openai", label="Main OpenAI")
    path = reverse("admin:voiceagents_agent_add")
    heights = {}
    errors = []

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 800})
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            log_in(page, live_server.url, "root", path)

            for mode, shown in SHOWN.items():
                page.select_option("#id_provider", mode)
                for title in SECTIONS:
                    expected = sync_api.expect(section(page, title))
                    expected.to_be_visible() if title in shown else expected.to_be_hidden()
                # The "for which architectures" labels are for pages without the script.
                sync_api.expect(page.locator(".va-for-modes").first).to_be_hidden()
                heights[mode] = page.evaluate("document.documentElement.scrollHeight")
                save_screenshot(page, f"agent-form-{mode}")

            # A reply handler answers instead of an LLM: the prompt rows go while none is written.
            prompt_row = page.locator(".form-row.field-reply_prompt")
            sync_api.expect(prompt_row).to_be_visible()
            page.select_option("#id_reply_handler", "demo")
            sync_api.expect(prompt_row).to_be_hidden()
            sync_api.expect(page.locator(".form-row.field-reply_provider")).to_be_hidden()
            page.select_option("#id_reply_handler", "")
            sync_api.expect(prompt_row).to_be_visible()

            # Realtime: its own voices, no "Other…"; the key note of its vendor only.
            page.select_option("#id_provider", "openai_realtime")
            voice = page.locator("#id_voice")
            assert voice.evaluate(VISIBLE_OPTIONS) == ["", *OPENAI_REALTIME_VOICES]
            credential_help = page.locator("#id_credential_helptext")
            sync_api.expect(credential_help.locator("li:visible")).to_have_text(
                ["OpenAI Realtime: when blank, using the default OpenAI credential “Main OpenAI”."]
            )
            page.select_option("#id_voice", "marin")

            # ElevenLabs: a voice left from Realtime is dropped; its default and "Other…".
            page.select_option("#id_provider", "elevenlabs_convai")
            sync_api.expect(voice).to_have_value("")
            sync_api.expect(voice.locator('option[value=""]')).to_have_text("Default (rachel)")
            sync_api.expect(page.locator("#id_voice_other")).to_be_hidden()
            sync_api.expect(credential_help.locator("li:visible")).to_contain_text(
                ["ElevenLabs Conversational AI: when blank, no ElevenLabs key"]
            )
            voice.select_option(label="Another voice ID or name…")
            page.fill("#id_voice_other", VOICE_ID)

            # Errors are shown next to their fields; the chosen architecture stays shown.
            page.fill("#id_name", "Front desk")
            page.fill("#id_variables", '{"company name": 1}')
            page.fill("#id_transfer_allowlist", '["555-1234"]')
            page.click("input[name=_save]")
            sync_api.expect(page.locator("#id_variables_error")).to_have_text(
                "Variable name 'company name' must be letters, digits and underscores "
                "(e.g. company_name)."
            )
            sync_api.expect(page.locator("#id_transfer_allowlist_error")).to_contain_text(
                "Not in E.164 format ('+', country code and number, e.g. +14155550100): 555-1234"
            )
            sync_api.expect(section(page, "The agent on ElevenLabs")).to_be_visible()
            sync_api.expect(section(page, "Pipeline")).to_be_hidden()
            sync_api.expect(voice).to_have_value(VOICE_ID)  # the typed voice kept, selected
            save_screenshot(page, "agent-form-errors")

            page.fill("#id_variables", '{"company_name": "Acme"}')
            page.fill("#id_transfer_allowlist", '["+14155550100"]')
            page.click("input[name=_save]")
            page.wait_for_url(live_server.url + reverse("admin:voiceagents_agent_changelist"))
            sync_api.expect(page.locator(".messagelist .warning")).to_contain_text(
                "ElevenLabs Conversational AI has no ElevenLabs key"
            )
        finally:
            browser.close()

    print("agent form height at 1280 px:", heights)
    assert errors == []
    assert all(height < MAX_HEIGHT for height in heights.values()), heights
    agent = Agent.objects.get(slug="front-desk")
    assert (agent.provider, agent.voice) == ("elevenlabs_convai", VOICE_ID)
    assert agent.transfer_allowlist == ["+14155550100"]


def test_without_javascript_every_section_shows_labelled_and_the_server_decides(
    live_server, browser_settings, root
):
    path = reverse("admin:voiceagents_agent_add")

    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": WIDTH, "height": 800}
            )
            page = context.new_page()
            page.set_default_timeout(10_000)
            log_in(page, live_server.url, "root", path)

            for title in SECTIONS:
                sync_api.expect(section(page, title)).to_be_visible()
            sync_api.expect(section(page, "Pipeline").locator(".va-for-modes")).to_have_text(
                "For Pipeline (STT → reply → TTS)."
            )
            sync_api.expect(page.locator("#id_voice_other")).to_be_visible()
            save_screenshot(page, "agent-form-without-javascript")

            # A pipeline agent: the Realtime voice left as it is on the page does not count.
            page.fill("#id_name", "Offline")
            page.fill("#id_slug", "offline")
            page.select_option("#id_provider", "pipeline")
            page.select_option("#id_stt_provider", "local")
            page.select_option("#id_tts_provider", "local")
            page.select_option("#id_tts_voice", "en-us")
            page.fill("#id_reply_prompt", "Answer in one sentence.")
            page.fill("#id_voice_other", "not-a-realtime-voice")
            page.click("input[name=_save]")
            page.wait_for_url(live_server.url + reverse("admin:voiceagents_agent_changelist"))
        finally:
            browser.close()

    agent = Agent.objects.get(slug="offline")
    assert (agent.provider, agent.stt_provider, agent.tts_voice) == ("pipeline", "local", "en-us")
    assert agent.reply_prompt == "Answer in one sentence."
