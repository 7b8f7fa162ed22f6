"""The credential form in a real browser: one vendor's section at a time, a secret kept across a
refused submit without ever reaching the page, and "Save and test connection" against a fake
Twilio. The phone number form follows its carrier the same way."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from tests.browser import BROWSER_MARKS, PASSWORD, launch, log_in, save_screenshot
from tests.fakes.twilio import ACCOUNT_SID
from tests.fakes.twilio_api import FakeTwilioAPI
from voiceagents.models import Credential

#: 32 hex digits with an upper-case letter in every run of five: no run can turn up by chance in
#: the page's lower-case hex (the account SID, tokens).
TOKEN = "D5F8B2C0E4A7D1F3B9C6E2A8D4F0B7C3"

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")


def leaked(html: str, secret: str = TOKEN) -> list[str]:
    return [secret[i : i + 5] for i in range(len(secret) - 4) if secret[i : i + 5] in html]


def test_the_credential_form_shows_one_vendor_keeps_the_secret_and_tests_the_connection(
    live_server, browser_settings, django_user_model
):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    add_path = reverse("admin:voiceagents_credential_add")
    number_url = live_server.url + reverse("admin:voiceagents_phonenumber_add")
    expect = sync_api.expect

    with FakeTwilioAPI(auth_token=TOKEN) as twilio:
        with sync_api.sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(10_000)
                log_in(page, live_server.url, "root", add_path)
                twilio_section = page.locator("fieldset.spec-data-twilio")
                telnyx_section = page.locator("fieldset.spec-data-telnyx")

                # No vendor yet: no vendor's section. Then only the chosen one's.
                expect(twilio_section).to_be_hidden()
                expect(telnyx_section).to_be_hidden()
                page.select_option("#id_vendor", "openai")
                expect(twilio_section).to_be_hidden()
                expect(telnyx_section).to_be_hidden()
                page.select_option("#id_vendor", "telnyx")
                expect(telnyx_section).to_be_visible()
                expect(twilio_section).to_be_hidden()
                # Of the notes on what each vendor's secret is, only Telnyx's shows.
                expect(page.locator("[data-spec-notes] li:visible")).to_have_text(
                    ["Telnyx: The Telnyx API v2 key (starts 'KEY')."]
                )
                page.select_option("#id_vendor", "twilio")
                expect(twilio_section).to_be_visible()
                expect(telnyx_section).to_be_hidden()

                # A good auth token, a mistyped account SID: refused, the token kept unseen.
                page.fill("#id_label", "Main Twilio account")
                page.fill("#id_secret", TOKEN)
                page.fill("#id_twilio__account_sid", "ACnot-valid")
                page.fill("#id_api_base_url", twilio.url)
                page.click("input[name=_save]")
                expect(page.locator(".errornote")).to_be_visible()
                expect(page.locator("fieldset.spec-data-twilio .errorlist")).to_contain_text(
                    "'AC' and 32 hex digits"
                )
                expect(page.locator("div.field-secret")).to_contain_text("Your secret is kept")
                expect(twilio_section).to_be_visible()
                expect(telnyx_section).to_be_hidden()
                refused_html = page.content()
                refused_secret = page.locator("#id_secret").input_value()

                # Only the SID is fixed: the kept token is saved, then tested against the fake.
                page.fill("#id_twilio__account_sid", ACCOUNT_SID)
                page.click("input[name=_test_connection]")
                expect(page.locator("ul.messagelist")).to_contain_text(
                    "Twilio accepted the auth token for account “Acme Dental” (status: active)."
                )
                save_screenshot(page, "credential-form-twilio")
                tested_html = page.content()

                # The phone number form follows its carrier in the same way.
                page.goto(number_url)
                codec = page.locator("fieldset.spec-data-telnyx")
                expect(codec).to_be_hidden()
                page.select_option("#id_carrier", "telnyx")
                expect(codec).to_be_visible()
                page.select_option("#id_carrier", "twilio")
                expect(codec).to_be_hidden()
            finally:
                browser.close()

        basic = base64.b64encode(f"{ACCOUNT_SID}:{TOKEN}".encode()).decode()
        assert twilio.requests == [(f"/2010-04-01/Accounts/{ACCOUNT_SID}.json", f"Basic {basic}")]

    assert refused_secret == ""
    assert leaked(refused_html) == []
    assert leaked(tested_html) == []
    credential = Credential.objects.get()
    assert credential.secret == TOKEN
    assert credential.data == {"account_sid": ACCOUNT_SID}
