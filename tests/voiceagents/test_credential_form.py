"""The credential and phone number forms: per-vendor sections, format checks, the kept secret, labels."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from telephony.carriers import validate_telnyx_api_key, validate_twilio_auth_token
from tests.fakes import telnyx as fake_telnyx
from tests.fakes import twilio as fake_twilio
from tests.voiceagents.factories import TWILIO_ACCOUNT_SID, make_credential, make_phone_number
from tests.voiceagents.test_admin import inputs_named, leaked_fragments
from voiceagents import crypto
from voiceagents.forms import CredentialForm
from voiceagents.forms.credentials import (
    KEPT_SECRET_PREFIX,
    KEPT_SECRET_TTL,
    keep_secret,
    kept_secret,
)
from voiceagents.models import Credential, PhoneNumber
from voiceagents.vendors import openai_key_warning

pytestmark = pytest.mark.django_db

#: A Twilio auth token whose every five-character run holds an upper-case letter, so that no run
#: can turn up by chance in the page's lower-case hex (SIDs, UUIDs).
TWILIO_TOKEN = "C4E7A1B9D3F5A8C2E6B0D4F7A3C9E1B5"
OPENAI_KEY = "sk-KEPT-SECR-ETxx-Qw7Z-Rt5Y"


def add_url(model: str = "credential") -> str:
    return reverse(f"admin:voiceagents_{model}_add")


def change_url(obj) -> str:
    return reverse(f"admin:voiceagents_{obj._meta.model_name}_change", args=[obj.pk])


def form_data(vendor: str, **overrides) -> dict[str, str]:
    data = {
        "vendor": vendor,
        "label": f"{vendor} account",
        "secret": "",
        "kept_secret": "",
        "is_default": "",
        "twilio__account_sid": "",
        "telnyx__connection_id": "",
        "telnyx__webhook_public_key": "",
        "api_base_url": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def secret_errors(response) -> list[str]:
    assert response.status_code == 200, "the form was accepted"
    return response.context["adminform"].form.errors.get("secret", [])


# -- format checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "SK" + "0123456789abcdef" * 2,
            "This is an API key SID ('SK…'). Twilio signs its webhooks with the account's auth "
            "token: paste the auth token (32 hex digits, under Account Info in the Twilio "
            "Console).",
        ),
        (
            TWILIO_ACCOUNT_SID,
            "This is the account SID ('AC…'): put it in Account SID, and the auth token (32 hex "
            "digits) here.",
        ),
        (
            "0123456789abcdef0123456789abcde",
            "Enter the auth token as Twilio shows it: 32 hex digits (0-9, a-f). This one is 31 "
            "characters long.",
        ),
        (
            "0123456789abcdef0123456789abcdeg",
            "Enter the auth token as Twilio shows it: 32 hex digits (0-9, a-f). This one is 32 "
            "characters long.",
        ),
    ],
    ids=["api-key-sid", "account-sid", "too-short", "not-hex"],
)
def test_a_twilio_secret_that_is_not_an_auth_token_is_refused_with_the_expected_shape(
    admin_client, value, message
):
    response = admin_client.post(
        add_url(), form_data("twilio", secret=value, twilio__account_sid=TWILIO_ACCOUNT_SID)
    )

    assert secret_errors(response) == [message]
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    "token", [fake_twilio.AUTH_TOKEN, TWILIO_TOKEN], ids=["lower-case", "upper-case"]
)
def test_a_twilio_auth_token_of_32_hex_digits_is_accepted(token):
    validate_twilio_auth_token(token)


def test_a_twilio_account_sid_that_is_not_ac_and_32_hex_digits_is_refused(admin_client):
    response = admin_client.post(
        add_url(), form_data("twilio", secret=TWILIO_TOKEN, twilio__account_sid="ACnot-valid")
    )

    assert response.context["adminform"].form.errors["twilio__account_sid"] == [
        "Enter the account SID as Twilio shows it: 'AC' and 32 hex digits."
    ]


def test_a_telnyx_secret_without_the_key_prefix_is_refused_with_the_expected_shape(admin_client):
    response = admin_client.post(add_url(), form_data("telnyx", secret="v1-token-0123456789"))

    assert secret_errors(response) == [
        "Enter a Telnyx API v2 key: it starts with 'KEY' (Mission Control portal → API Keys). "
        "Webhook public keys and v1 API keys do not work here."
    ]


@pytest.mark.parametrize(
    "key",
    [
        fake_telnyx.API_KEY,
        # The shape Telnyx issues today: KEY, 32 upper-case hex digits, '_' and 22 more.
        "KEY0195A1B2C3D4E5F60718293A4B5C6D7E_Zx8Qw3Er5Ty7Ui9Op1As2D",
    ],
)
def test_telnyx_api_v2_keys_are_accepted(key):
    validate_telnyx_api_key(key)


@pytest.mark.parametrize(
    ("secret", "base_url", "warned"),
    [
        ("sk-proj-abc123", "", False),
        ("sk-svcacct-abc123", "", False),
        ("gw-issued-key-123", "https://gateway.example.com", False),
        ("gw-issued-key-123", "", True),
    ],
)
def test_an_openai_key_without_sk_is_saved_with_a_warning_never_refused(
    admin_client, secret, base_url, warned
):
    response = admin_client.post(
        add_url(), form_data("openai", secret=secret, api_base_url=base_url)
    )

    assert response.status_code == 302
    assert Credential.objects.get().secret == secret
    warnings = [m.message for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    expected = [openai_key_warning("gw-issued-key-123", "")] if warned else []
    assert [str(w) for w in warnings] == [str(w) for w in expected]
    if warned:
        assert str(warnings[0]).startswith(
            "OpenAI API keys start with 'sk-' and this secret does not."
        )


# -- per-vendor validation --------------------------------------------------------------------


def test_only_the_chosen_vendors_fields_and_secret_shape_are_checked_and_stored(admin_client):
    # An OpenAI key posted with leftovers in the Twilio section: neither the SID check nor the
    # auth-token shape applies, and nothing of Twilio's is stored.
    response = admin_client.post(
        add_url(),
        form_data(
            "openai",
            secret=OPENAI_KEY,
            twilio__account_sid="ACnot-valid",
            telnyx__connection_id="not digits",
        ),
    )

    assert response.status_code == 302
    credential = Credential.objects.get()
    assert (credential.vendor, credential.data, credential.secret) == ("openai", {}, OPENAI_KEY)


def test_each_vendor_section_is_classed_and_labelled_with_its_vendor(admin_client):
    html = admin_client.get(add_url()).content.decode()

    sections = sections_of(html)
    assert sections == {
        "twilio": ("Twilio", "Only for Twilio credentials."),
        "telnyx": ("Telnyx", "Only for Telnyx credentials."),
    }
    [vendor_select] = re.findall(r"<select[^>]*name=\"vendor\"[^>]*>", html)
    assert 'data-spec-select="spec-data"' in vendor_select
    assert "/static/voiceagents/spec_form.js" in html


def test_the_phone_number_form_has_the_same_per_carrier_sections(admin_client):
    number = make_phone_number("telnyx")

    html = admin_client.get(change_url(number)).content.decode()

    assert sections_of(html) == {"telnyx": ("Telnyx", "Only for Telnyx numbers.")}
    [carrier_select] = re.findall(r"<select[^>]*name=\"carrier\"[^>]*>", html)
    assert 'data-spec-select="spec-data"' in carrier_select
    assert "/static/voiceagents/spec_form.js" in html


def test_the_spec_form_script_is_served(client):
    from django.contrib.staticfiles import finders

    path = finders.find("voiceagents/spec_form.js")

    assert path is not None
    with open(path, encoding="utf-8") as script:
        assert "data-spec-select" in script.read()


# -- the secret kept across a failed submit ---------------------------------------------------


def test_a_typed_secret_is_kept_encrypted_when_another_field_is_wrong_and_saved_on_the_retry(
    admin_client,
):
    refused = admin_client.post(
        add_url(), form_data("twilio", secret=TWILIO_TOKEN, twilio__account_sid="ACnot-valid")
    )

    html = refused.content.decode()
    form = refused.context["adminform"].form
    assert list(form.errors) == ["twilio__account_sid"]
    assert leaked_fragments(html, TWILIO_TOKEN) == []
    [secret_input] = inputs_named(html, "secret")
    assert (secret_input["type"], "value" in secret_input) == ("password", False)
    [kept] = inputs_named(html, "kept_secret")
    assert kept["type"] == "hidden" and kept["value"]
    assert "Your secret is kept (encrypted, never shown)" in html

    saved = admin_client.post(
        add_url(),
        form_data("twilio", kept_secret=kept["value"], twilio__account_sid=TWILIO_ACCOUNT_SID),
    )

    assert saved.status_code == 302, saved.context["adminform"].form.errors
    credential = Credential.objects.get()
    assert credential.secret == TWILIO_TOKEN
    assert credential.data == {"account_sid": TWILIO_ACCOUNT_SID}


def test_a_secret_kept_on_a_change_page_replaces_the_stored_one_on_the_retry(admin_client):
    credential = make_credential("openai", secret="sk-OLDS-ECRE-Tzzz-Aa1B")

    refused = admin_client.post(
        change_url(credential), form_data("openai", secret=OPENAI_KEY, label="")
    )
    [kept] = inputs_named(refused.content.decode(), "kept_secret")
    assert leaked_fragments(refused.content.decode(), OPENAI_KEY) == []
    saved = admin_client.post(
        change_url(credential), form_data("openai", kept_secret=kept["value"], label="Fixed")
    )

    assert saved.status_code == 302
    credential.refresh_from_db()
    assert (credential.label, credential.secret) == ("Fixed", OPENAI_KEY)


def test_a_refused_secret_is_not_kept(admin_client):
    response = admin_client.post(
        add_url(), form_data("twilio", secret="not-a-token", twilio__account_sid="ACnot-valid")
    )

    [kept] = inputs_named(response.content.decode(), "kept_secret")
    assert kept.get("value", "") == ""
    assert "Your secret is kept" not in response.content.decode()


def test_a_stored_encrypted_secret_cannot_be_posted_as_a_kept_secret(admin_client):
    # Longer than the kept-secret prefix, so a missing prefix check would leave a secret behind.
    other = make_credential("openai", secret="sk-STOL-ENSE-CRET-xx9Q-LONG-ERTH-ANPR-EFIX")

    response = admin_client.post(add_url(), form_data("openai", kept_secret=other.encrypted_secret))

    assert secret_errors(response) == ["The secret you typed earlier expired: enter it again."]
    assert Credential.objects.count() == 1


def test_an_expired_kept_secret_asks_for_the_secret_again(admin_client):
    # A token made just over the lifetime ago, as keep_secret would have made it then.
    made_at = int(time.time()) - KEPT_SECRET_TTL - 1
    token = crypto.fernet().encrypt_at_time(KEPT_SECRET_PREFIX + OPENAI_KEY.encode(), made_at)
    assert kept_secret(keep_secret(OPENAI_KEY)) == OPENAI_KEY

    response = admin_client.post(add_url(), form_data("openai", kept_secret=token.decode()))

    assert secret_errors(response) == ["The secret you typed earlier expired: enter it again."]


def test_the_form_alone_keeps_the_secret_in_its_hidden_field_only():
    form = CredentialForm(
        data=form_data("twilio", secret=TWILIO_TOKEN, twilio__account_sid="ACnot-valid")
    )

    assert not form.is_valid()
    assert TWILIO_TOKEN not in str(form["secret"])
    assert TWILIO_TOKEN not in str(form["kept_secret"])
    assert form["secret"].help_text == CredentialForm.KEPT_HELP


# -- labels -----------------------------------------------------------------------------------


class _Labels(HTMLParser):
    def __init__(self):
        super().__init__()
        self.labels: list[str] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        if tag == "label":
            self._in = True
            self.labels.append("")

    def handle_endtag(self, tag):
        if tag == "label":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.labels[-1] += data


def labels_of(html: str) -> list[str]:
    parser = _Labels()
    parser.feed(html)
    return [" ".join(label.split()) for label in parser.labels if label.strip()]


@pytest.mark.parametrize("page", ["credential-add", "credential-change", "number-change"])
def test_every_credential_and_phone_number_label_is_capitalised(admin_client, page):
    if page == "credential-add":
        url = add_url()
    elif page == "credential-change":
        url = change_url(make_credential("twilio"))
    else:
        url = change_url(make_phone_number("telnyx"))

    labels = labels_of(admin_client.get(url).content.decode())

    assert labels
    assert [label for label in labels if not label[0].isupper()] == []
    if page.startswith("credential"):
        assert {"Secret:", "Default", "API base URL:"} <= set(labels)


def test_every_credential_and_phone_number_field_has_a_capitalised_verbose_name():
    names = {
        f"{model.__name__}.{field.name}": str(field.verbose_name)
        for model in (Credential, PhoneNumber)
        for field in model._meta.get_fields()
        if field.concrete
    }

    assert {name: v for name, v in names.items() if not v[0].isupper()} == {}
    assert names["Credential.api_base_url"] == "API base URL"
    assert names["Credential.is_default"] == "Default"


# -- helpers ----------------------------------------------------------------------------------


class _Sections(HTMLParser):
    """``spec id → (title, description)`` of each ``fieldset.spec-data-<id>``."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self._spec: str | None = None
        self._part: int | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "fieldset" and "spec-data" in classes:
            [spec] = [c[len("spec-data-") :] for c in classes if c.startswith("spec-data-")]
            self._spec = spec
            self.sections[spec] = ["", ""]
        elif self._spec and tag == "h2":
            self._part = 0
        elif self._spec and tag == "div" and "description" in classes:
            self._part = 1

    def handle_endtag(self, tag):
        if tag == "fieldset":
            self._spec = None
        if tag in ("h2", "div"):
            self._part = None

    def handle_data(self, data):
        if self._spec and self._part is not None:
            self.sections[self._spec][self._part] += data


def sections_of(html: str) -> dict[str, tuple[str, str]]:
    parser = _Sections()
    parser.feed(html)
    return {spec: (t.strip(), d.strip()) for spec, (t, d) in parser.sections.items()}
