"""The admin's "Test connection": each vendor's cheapest authenticated request, against loopback fakes."""

from __future__ import annotations

import logging
import socket

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.fakes import telnyx as fake_telnyx
from tests.fakes import twilio as fake_twilio
from tests.fakes.deepgram_api import FakeDeepgramAPI
from tests.fakes.elevenlabs_api import FakeElevenLabsAPI
from tests.fakes.openai_audio import FakeOpenAIAudio
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.voiceagents.factories import make_credential
from voiceagents.connection import ConnectionResult, api_root, check_connection
from voiceagents.models import Credential

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ELEVENLABS_KEY = "sk_test_elevenlabs_0123456789abcdef"
DEEPGRAM_KEY = "dg-test-key-0123456789abcdef0123456789ab"
WRONG = "sk-WRON-GKEY-xxxx-Qq1Z"


def closed_port_url(path: str = "") -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# -- one fake per vendor, and how a credential points at it ----------------------------------


class Vendor:
    """A vendor's fake API and the credential that reaches it."""

    fake_class = None
    key = ""
    data: dict = {}

    def fake(self):
        return self.fake_class(api_key=self.key)

    def base_url(self, fake) -> str:
        return fake.url

    def credential(self, base_url: str, secret: str | None = None):
        return make_credential(
            self.vendor, secret=secret or self.key, api_base_url=base_url, **self.extra()
        )

    def extra(self) -> dict:
        return {}


class OpenAI(Vendor):
    vendor, fake_class, key = "openai", FakeOpenAIAudio, OPENAI_KEY
    accepted = "OpenAI accepted the key (5 models available)."
    refused = (
        "OpenAI refused the request (HTTP 401): Incorrect API key provided: sk-wrong. You can "
        "find your API key at https://platform.openai.com/account/api-keys."
    )


class ElevenLabs(Vendor):
    vendor, fake_class, key = "elevenlabs", FakeElevenLabsAPI, ELEVENLABS_KEY
    accepted = "ElevenLabs accepted the key (plan: creator)."
    refused = "ElevenLabs refused the request (HTTP 401): Invalid API key"


class Deepgram(Vendor):
    vendor, fake_class, key = "deepgram", FakeDeepgramAPI, DEEPGRAM_KEY
    accepted = "Deepgram accepted the key (projects: Front desk)."
    refused = "Deepgram refused the request (HTTP 401): Invalid credentials."


class Twilio(Vendor):
    vendor, key = "twilio", fake_twilio.AUTH_TOKEN
    accepted = "Twilio accepted the auth token for account “Acme Dental” (status: active)."
    refused = "Twilio refused the request (HTTP 401): Authenticate"

    def fake(self):
        return FakeTwilioAPI()

    def extra(self):
        return {"data": {"account_sid": fake_twilio.ACCOUNT_SID}}


class Telnyx(Vendor):
    vendor, key = "telnyx", fake_telnyx.API_KEY
    accepted = "Telnyx accepted the API key (available credit: 400.00 USD)."
    refused = (
        "Telnyx refused the request (HTTP 401): Could not understand the provided credentials."
    )

    def fake(self):
        return fake_telnyx.FakeTelnyxAPI()


VENDORS = [OpenAI(), ElevenLabs(), Deepgram(), Twilio(), Telnyx()]
IDS = [v.vendor for v in VENDORS]


@pytest.mark.parametrize("vendor", VENDORS, ids=IDS)
def test_a_working_key_is_accepted_with_what_the_vendor_answered(vendor):
    with vendor.fake() as fake:
        result = check_connection(vendor.credential(vendor.base_url(fake)))

    assert result == ConnectionResult(True, vendor.accepted, 200)


@pytest.mark.parametrize("vendor", VENDORS, ids=IDS)
def test_a_wrong_key_shows_the_vendors_message_and_status_and_never_the_key(vendor, caplog):
    # Twilio's and Telnyx's checks refuse nothing by shape here: the credential is made
    # directly, as an old row or the Patter API would have it.
    wrong = "0123456789abcdef0123456789abcdee" if vendor.vendor == "twilio" else WRONG
    caplog.set_level(logging.DEBUG)
    with vendor.fake() as fake:
        result = check_connection(vendor.credential(vendor.base_url(fake), secret=wrong))

    assert result == ConnectionResult(False, vendor.refused, 401)
    assert wrong not in caplog.text
    assert "failed (HTTP 401)" in caplog.text


@pytest.mark.parametrize("vendor", VENDORS, ids=IDS)
def test_an_unreachable_vendor_is_a_failure_saying_where_it_looked(vendor):
    url = closed_port_url("/v2" if vendor.vendor == "telnyx" else "")

    result = check_connection(vendor.credential(url))

    assert not result.ok
    assert result.status_code is None
    assert result.message.startswith(f"Could not reach {type(vendor).__name__} at {url}/")


def test_the_vendors_url_setting_is_used_when_the_credential_has_no_override(
    voiceagents_settings,
):
    credential = make_credential("deepgram", secret=DEEPGRAM_KEY)
    with FakeDeepgramAPI() as fake:
        # The streaming URL calls use; the check asks the REST root of the same host.
        voiceagents_settings["DEEPGRAM_URL"] = fake.url.replace("http", "ws") + "/v1/listen"
        result = check_connection(credential)

        assert fake.paths == ["/v1/projects"]
    assert result.ok


@pytest.mark.parametrize(
    ("setting", "fake_class", "vendor", "key", "data"),
    [
        ("TWILIO_API_URL", FakeTwilioAPI, "twilio", fake_twilio.AUTH_TOKEN, "twilio"),
        ("TELNYX_API_URL", fake_telnyx.FakeTelnyxAPI, "telnyx", fake_telnyx.API_KEY, None),
    ],
    ids=["twilio", "telnyx"],
)
def test_a_carriers_api_url_setting_is_used_when_the_credential_has_no_override(
    voiceagents_settings, setting, fake_class, vendor, key, data
):
    extra = {"data": {"account_sid": fake_twilio.ACCOUNT_SID}} if data else {}
    credential = make_credential(vendor, secret=key, **extra)
    with fake_class() as fake:
        voiceagents_settings[setting] = fake.url
        result = check_connection(credential)

    assert result.ok, result.message


def test_a_suspended_twilio_account_is_reported_with_its_status():
    credential = Twilio().credential("")
    with FakeTwilioAPI() as fake:
        fake.status = "suspended"
        credential.api_base_url = fake.url
        result = check_connection(credential)

    assert result.message.endswith("(status: suspended).")


def test_a_twilio_credential_without_an_account_sid_says_so():
    # The model requires the SID; a row from before that rule, or edited in the database.
    credential = Credential(vendor="twilio", label="Old row", data={})
    credential.secret = fake_twilio.AUTH_TOKEN

    result = check_connection(credential)

    assert result == ConnectionResult(
        False, "Enter the account SID, then test the connection again."
    )


def test_a_vendor_that_echoes_the_key_has_it_masked():
    with FakeOpenAIAudio() as fake:
        fake.fail_next(403, {"error": {"message": f"Key {OPENAI_KEY} is disabled", "type": "x"}})
        result = check_connection(OpenAI().credential(fake.url))

    assert result == ConnectionResult(
        False, "OpenAI refused the request (HTTP 403): Key •••• is disabled", 403
    )


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("wss://api.openai.com/v1/realtime", "https://api.openai.com"),
        ("ws://127.0.0.1:9/v1/listen?x=1", "http://127.0.0.1:9"),
        (
            "https://gateway.example.com/openai/v1/chat/completions",
            "https://gateway.example.com/openai",
        ),
        ("https://eu.api.example.com", "https://eu.api.example.com"),
        ("https://api.elevenlabs.io/", "https://api.elevenlabs.io"),
    ],
)
def test_api_root_is_the_rest_root_of_a_service_url(url, root):
    assert api_root(url) == root


# -- the admin: a list action and a button on the change page ---------------------------------


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m.message)) for m in get_messages(response.wsgi_request)]


def test_the_list_action_tests_each_selected_credential(admin_client):
    with FakeOpenAIAudio() as openai, FakeTwilioAPI() as twilio:
        good = OpenAI().credential(openai.url)
        bad = Twilio().credential(twilio.url, secret="0123456789abcdef0123456789abcdee")
        response = admin_client.post(
            reverse("admin:voiceagents_credential_changelist"),
            {"action": "test_connection", "_selected_action": [good.pk, bad.pk]},
        )

    assert response.status_code == 302
    assert sorted(messages_of(response)) == sorted(
        [
            ("success", f"{good}: {OpenAI.accepted}"),
            ("error", f"{bad}: {Twilio.refused}"),
        ]
    )


def test_the_list_action_needs_the_change_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_credential"))
    client.force_login(user)
    credential = make_credential("openai")

    page = client.get(reverse("admin:voiceagents_credential_changelist"))
    response = client.post(
        reverse("admin:voiceagents_credential_changelist"),
        {"action": "test_connection", "_selected_action": [credential.pk]},
    )

    assert page.status_code == 200
    assert credential.label in page.content.decode()
    assert 'value="test_connection"' not in page.content.decode()
    # Posted anyway: refused like an unknown action, and nothing is tested.
    assert [m for m in messages_of(response) if str(credential) in m[1]] == []


def test_save_and_test_connection_saves_then_shows_the_vendors_answer_on_the_change_page(
    admin_client,
):
    credential = make_credential("elevenlabs", secret=ELEVENLABS_KEY)
    url = reverse("admin:voiceagents_credential_change", args=[credential.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="_test_connection"' in page
    with FakeElevenLabsAPI() as fake:
        response = admin_client.post(
            url,
            {
                "vendor": "elevenlabs",
                "label": "Voices",
                "secret": "",
                "kept_secret": "",
                "api_base_url": fake.url,
                "_test_connection": "Save and test connection",
            },
        )
        assert [r.path for r in fake.requests] == ["/v1/user"]

    assert response.status_code == 302
    assert response.url == url
    credential.refresh_from_db()
    assert credential.label == "Voices"
    assert messages_of(response)[-1] == ("success", f"{credential}: {ElevenLabs.accepted}")
