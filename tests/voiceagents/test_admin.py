"""The admin: access control, call pages and recordings, write-only secrets, agent forms."""

from __future__ import annotations

import base64
import datetime as dt
import io
import wave
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

import voiceagents
from tests.voiceagents.factories import (
    TWILIO_ACCOUNT_SID,
    add_event,
    add_transcript,
    attach_recording,
    make_agent,
    make_call,
    make_credential,
    make_phone_number,
)
from voiceagents.models import (
    Agent,
    Call,
    CallEventKind,
    CallStatus,
    Credential,
    Direction,
)
from voiceagents.vendors import vendors

pytestmark = pytest.mark.django_db

#: The registry is module-level and refuses a second function under the same name: the name is
#: unique to this module, and the function is registered once, at import.
REPLY_HANDLER_NAME = "tests_admin_echo_reply"


@voiceagents.reply_handler(REPLY_HANDLER_NAME)
async def echo_reply(event):
    return f"You said: {event['text']}"


#: Distinctive secrets, one per vendor. Every run of five characters crosses a '-', so no
#: five-character window can turn up by chance in a CSRF token or another alphanumeric value.
#: The Twilio auth token must be 32 hex digits: upper-case ones, with a letter in every run of
#: five, so that no window can turn up in the lower-case hex of UUIDs and SIDs.
SECRETS = {
    "openai": "sk-SECR-ETVA-LUE1-opQ7-Wv9Q",
    "elevenlabs": "xi-SECR-ETVA-LUE2-elZ3-Kp3M",
    "deepgram": "dg-SECR-ETVA-LUE3-dgY5-Hn4R",
    "twilio": "9F3A1C7E5B2D8F4A6C0E9B3D7F1A5C2E",
    "telnyx": "KEY-SECR-ETVA-LUE5-tnV2-Qd7L",
}

#: Extra add-form fields each vendor needs (generated from its spec: ``<vendor>__<key>``).
VENDOR_FIELDS = {
    "twilio": {"twilio__account_sid": TWILIO_ACCOUNT_SID},
    "telnyx": {
        "telnyx__connection_id": "1494404757140276705",
        "telnyx__webhook_public_key": base64.b64encode(
            Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode(),
    },
}


# -- helpers ----------------------------------------------------------------------------------


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))


def inputs_named(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Inputs()
    parser.feed(html)
    return [attrs for attrs in parser.inputs if attrs.get("name") == name]


def leaked_fragments(html: str, secret: str, size: int = 5) -> list[str]:
    """Every run of ``size`` characters of ``secret`` found in ``html``.

    Any leaked substring longer than four characters contains one of these runs.
    """
    windows = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    return sorted(window for window in windows if window in html)


def management_form_data(response) -> dict[str, str]:
    """The inline formsets' management-form fields, as the rendered page would post them."""
    data = {}
    for inline in response.context["inline_admin_formsets"]:
        form = inline.formset.management_form
        for name in form.fields:
            data[form.add_prefix(name)] = form[name].value()
    return data


def admin_url(model: str, view: str, *args) -> str:
    return reverse(f"admin:voiceagents_{model}_{view}", args=args)


def content(response) -> str:
    return response.content.decode()


def read_streaming(response) -> bytes:
    # The test client closes a streaming response once its content is consumed. Closing it again
    # fires request_finished a second time, which closes the database connection mid-test (only
    # PostgreSQL notices: the test's transaction is lost).
    return b"".join(response.streaming_content)


def credential_form_data(vendor: str, **overrides) -> dict[str, str]:
    data = {
        "vendor": vendor,
        "label": f"{vendors.get(vendor).name} via admin",
        "secret": SECRETS[vendor],
        "twilio__account_sid": "",
        "telnyx__connection_id": "",
        "telnyx__webhook_public_key": "",
        "api_base_url": "",
        "_save": "Save",
        **VENDOR_FIELDS.get(vendor, {}),
    }
    data.update(overrides)
    return data


def agent_form_data(**overrides) -> dict[str, str]:
    data = {
        "name": "Front desk",
        "slug": "front-desk",
        "enabled": "on",
        "provider": "openai_realtime",
        "system_prompt": "You are a helpful assistant.",
        "first_message": "Hi, thanks for calling {company}!",
        "variables": '{"company": "Acme Dental"}',
        "language": "en",
        "model": "",
        "voice": "alloy",
        "credential": "",
        "stt_provider": "",
        "stt_credential": "",
        "stt_language": "",
        "tts_provider": "",
        "tts_credential": "",
        "tts_voice": "",
        "reply_handler": "",
        "reply_prompt": "",
        "reply_provider": "openai_chat",
        "reply_model": "gpt-4o-mini",
        "reply_credential": "",
        "provider_options": "{}",
        "record_calls": "on",
        "max_call_duration": "1800",
        "transfer_allowlist": "[]",
        "answering_machine_detection": "on",
        "machine_action": "hangup",
        "voicemail_message": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def post_agent_add(client, **overrides):
    url = admin_url("agent", "add")
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, {**agent_form_data(**overrides), **management_form_data(page)})


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    """Staff, but without a single model permission."""
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def user_client(client, django_user_model):
    """Logged in, but not staff."""
    user = django_user_model.objects.create_user("member", password="pw")
    client.force_login(user)
    return client


@pytest.fixture
def recorded_call():
    """A finished call with an out-of-order transcript, events, metrics and a WAV recording."""
    number = make_phone_number("twilio", number="+14155550100")
    agent = make_agent(name="Front desk", slug="front-desk")
    call = make_call(
        agent=agent,
        phone_number=number,
        from_number="+12025550123",
        to_number="+14155550100",
        provider="openai_realtime",
        metrics={"barge_ins": 1, "frames_in": 812, "latency_ms": {"p50": 420, "p95": 910}},
    )
    # Created out of order on purpose: the page must sort by seq, not by primary key.
    add_transcript(
        call,
        {
            "seq": 3,
            "role": "caller",
            "text": "Thursday morning, please.",
            "start_ms": 5200,
            "end_ms": 6900,
        },
        {
            "seq": 1,
            "role": "agent",
            "text": "Hi, thanks for calling Acme Dental!",
            "start_ms": 0,
            "end_ms": 1800,
        },
        {
            "seq": 2,
            "role": "agent",
            "text": "We have openings on Thursday and",
            "start_ms": 2000,
            "end_ms": 4100,
            "interrupted": True,
        },
        {
            "seq": 4,
            "role": "tool",
            "text": "book_slot(day='thu')",
            "start_ms": 7000,
            "end_ms": 7100,
        },
    )
    add_event(call, CallEventKind.STATUS, at_ms=0, data={"status": "in_progress"})
    add_event(call, CallEventKind.BARGE_IN, at_ms=4100, data={"cut_at_ms": 4100})
    add_event(call, CallEventKind.DTMF, at_ms=6000, data={"digit": "5"})
    wav = attach_recording(call)
    yield SimpleNamespace(call=call, agent=agent, number=number, wav=wav)
    default_storage.delete(call.recording.name)


@pytest.fixture
def admin_objects(recorded_call):
    return SimpleNamespace(
        credential=recorded_call.agent.credential,
        agent=recorded_call.agent,
        phonenumber=recorded_call.number,
        call=recorded_call.call,
    )


#: Every admin page that must render for a superuser. Calls have no add page.
PAGES = [
    ("credential", "changelist"),
    ("credential", "add"),
    ("credential", "change"),
    ("agent", "changelist"),
    ("agent", "add"),
    ("agent", "change"),
    ("phonenumber", "changelist"),
    ("phonenumber", "add"),
    ("phonenumber", "change"),
    ("call", "changelist"),
    ("call", "change"),
]
PAGE_IDS = [f"{model}-{view}" for model, view in PAGES]

#: Pages that must be refused to anyone who is not allowed in, including Call's absent add page.
GUARDED_PAGES = [*PAGES, ("call", "add"), ("call", "recording")]
GUARDED_IDS = [f"{model}-{view}" for model, view in GUARDED_PAGES]


def page_url(objects, model: str, view: str) -> str:
    if view in ("change", "recording"):
        return admin_url(model, view, getattr(objects, model).pk)
    return admin_url(model, view)


# -- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "view"), PAGES, ids=PAGE_IDS)
def test_every_admin_page_renders_for_a_superuser(admin_client, admin_objects, model, view):
    response = admin_client.get(page_url(admin_objects, model, view))

    assert response.status_code == 200


def test_call_has_no_add_page_even_for_a_superuser(admin_client, admin_objects):
    assert admin_client.get(admin_url("call", "add")).status_code == 403

    changelist = admin_client.get(admin_url("call", "changelist"))
    assert changelist.context["has_add_permission"] is False
    assertNotContains(changelist, admin_url("call", "add"))
    assertNotContains(admin_client.get(reverse("admin:index")), admin_url("call", "add"))


@pytest.mark.parametrize(("model", "view"), GUARDED_PAGES, ids=GUARDED_IDS)
def test_admin_pages_send_anonymous_users_to_the_login_page(client, admin_objects, model, view):
    url = page_url(admin_objects, model, view)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    assert "next=" in response.url


@pytest.mark.parametrize(("model", "view"), GUARDED_PAGES, ids=GUARDED_IDS)
def test_admin_pages_send_non_staff_users_to_the_login_page(
    user_client, admin_objects, model, view
):
    url = page_url(admin_objects, model, view)

    response = user_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(("model", "view"), GUARDED_PAGES, ids=GUARDED_IDS)
def test_admin_pages_are_forbidden_to_staff_without_permissions(
    staff_client, admin_objects, model, view
):
    response = staff_client.get(page_url(admin_objects, model, view))

    assert response.status_code == 403
    if view == "recording":
        assert admin_objects.call.recording.name  # refused, although the file exists


def test_staff_with_only_the_view_call_permission_can_open_a_call_and_its_recording(
    client, django_user_model, recorded_call
):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)
    call = recorded_call.call

    assert client.get(admin_url("call", "change", call.pk)).status_code == 200
    response = client.get(admin_url("call", "recording", call.pk))
    assert response.status_code == 200
    assert read_streaming(response) == recorded_call.wav
    assert client.get(admin_url("credential", "changelist")).status_code == 403


# -- the recording view ----------------------------------------------------------------------


def test_recording_view_serves_the_wav_bytes_to_a_superuser(admin_client, recorded_call):
    call = recorded_call.call

    response = admin_client.get(admin_url("call", "recording", call.pk))

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert f'filename="call-{call.pk}.wav"' in response["Content-Disposition"]
    body = read_streaming(response)
    assert body == recorded_call.wav
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        assert wav.getnframes() == 160


def test_recording_view_is_404_when_the_call_has_no_recording(admin_client):
    call = make_call()

    assert admin_client.get(admin_url("call", "recording", call.pk)).status_code == 404


def test_recording_view_is_404_when_the_file_is_missing_from_storage(admin_client, recorded_call):
    default_storage.delete(recorded_call.call.recording.name)

    response = admin_client.get(admin_url("call", "recording", recorded_call.call.pk))

    assert response.status_code == 404


def test_recording_view_is_404_for_an_unknown_call(admin_client):
    url = admin_url("call", "recording", "00000000-0000-4000-8000-000000000000")

    assert admin_client.get(url).status_code == 404


# -- secrets ----------------------------------------------------------------------------------


def test_credential_secret_never_appears_in_admin_html(admin_client):
    for vendor in SECRETS:
        response = admin_client.post(admin_url("credential", "add"), credential_form_data(vendor))
        assert response.status_code == 302, response.context["adminform"].form.errors
    credentials = {c.vendor: c for c in Credential.objects.all()}
    assert {vendor: c.secret for vendor, c in credentials.items()} == SECRETS

    agent = make_agent(credential=credentials["openai"])
    pipeline = make_agent(
        provider="pipeline",
        stt_provider="deepgram",
        stt_credential=credentials["deepgram"],
        tts_provider="elevenlabs",
        tts_credential=credentials["elevenlabs"],
        reply_handler=REPLY_HANDLER_NAME,
    )
    twilio_number = make_phone_number("twilio", credential=credentials["twilio"], agent=agent)
    telnyx_number = make_phone_number("telnyx", credential=credentials["telnyx"], agent=pipeline)
    call = make_call(agent=agent, phone_number=twilio_number, to_number=twilio_number.number)
    add_transcript(call, {"seq": 1, "role": "agent", "text": "Hello!"})

    urls = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["voiceagents"]),
        admin_url("credential", "changelist"),
        admin_url("credential", "changelist") + "?q=via+admin",
        admin_url("credential", "changelist") + "?vendor__exact=twilio",
        admin_url("agent", "changelist"),
        admin_url("agent", "changelist") + "?q=front",
        admin_url("phonenumber", "changelist"),
        admin_url("phonenumber", "changelist") + "?q=%2B1415",
        admin_url("call", "changelist"),
        admin_url("call", "changelist") + "?q=hello",
        admin_url("credential", "add"),
        admin_url("agent", "add"),
        admin_url("phonenumber", "add"),
        admin_url("agent", "change", agent.pk),
        admin_url("agent", "change", pipeline.pk),
        admin_url("phonenumber", "change", twilio_number.pk),
        admin_url("phonenumber", "change", telnyx_number.pk),
        admin_url("call", "change", call.pk),
    ]
    for credential in credentials.values():
        urls += [
            admin_url("credential", "change", credential.pk),
            admin_url("credential", "history", credential.pk),
            admin_url("credential", "delete", credential.pk),
        ]

    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = content(response)
        for vendor, secret in SECRETS.items():
            assert secret not in html, (url, vendor)
            assert secret[:-4] not in html, (url, vendor)
            assert leaked_fragments(html, secret) == [], (url, vendor)
            assert credentials[vendor].encrypted_secret not in html, (url, vendor)


@pytest.mark.parametrize("vendor", list(SECRETS), ids=str)
def test_credential_change_page_shows_a_masked_hint_of_at_most_the_last_four_characters(
    admin_client, vendor
):
    data = {name.split("__")[1]: value for name, value in VENDOR_FIELDS.get(vendor, {}).items()}
    credential = make_credential(vendor, secret=SECRETS[vendor], data=data)

    response = admin_client.get(admin_url("credential", "change", credential.pk))

    assertContains(response, "••••" + SECRETS[vendor][-4:])
    assert leaked_fragments(content(response), SECRETS[vendor]) == []


def test_a_short_secret_shows_no_characters_in_its_hint(admin_client):
    credential = make_credential("deepgram", secret="Zq-Q7-xZ")

    response = admin_client.get(admin_url("credential", "change", credential.pk))

    assert response.context["adminform"].form.instance.secret_hint() == "••••"
    assertContains(response, '<div class="readonly">••••</div>', html=True)
    assert leaked_fragments(content(response), "Zq-Q7-xZ", size=3) == []


def test_changing_a_credential_with_a_blank_secret_keeps_the_old_secret(admin_client):
    credential = make_credential("openai", secret=SECRETS["openai"], label="Old label")

    response = admin_client.post(
        admin_url("credential", "change", credential.pk),
        credential_form_data("openai", label="New label", secret=""),
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.label == "New label"
    assert credential.secret == SECRETS["openai"]


def test_posting_a_new_secret_replaces_the_old_one(admin_client):
    credential = make_credential("openai", secret=SECRETS["openai"])
    old_token = credential.encrypted_secret

    response = admin_client.post(
        admin_url("credential", "change", credential.pk),
        credential_form_data("openai", secret="sk-NEWS-ECRE-T123-Zz9A"),
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.secret == "sk-NEWS-ECRE-T123-Zz9A"
    assert credential.encrypted_secret != old_token
    assert "sk-NEWS" not in credential.encrypted_secret


def test_adding_a_credential_without_a_secret_is_an_error_on_the_secret_field(admin_client):
    response = admin_client.post(
        admin_url("credential", "add"), credential_form_data("openai", secret="   ")
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.errors) == ["secret"]
    assert "Enter the secret" in form.errors["secret"][0]
    assert not Credential.objects.exists()


def test_password_input_never_renders_a_value(admin_client):
    credential = make_credential("twilio", secret=SECRETS["twilio"])

    change_page = admin_client.get(admin_url("credential", "change", credential.pk))
    # A refused add form comes back with the other fields filled in, but not the secret.
    refused = admin_client.post(
        admin_url("credential", "add"),
        credential_form_data("twilio", twilio__account_sid="", label="Missing SID"),
    )

    assert refused.status_code == 200
    assert "twilio__account_sid" in refused.context["adminform"].form.errors
    for response in (change_page, refused, admin_client.get(admin_url("credential", "add"))):
        [secret_input] = inputs_named(content(response), "secret")
        assert secret_input["type"] == "password"
        assert "value" not in secret_input
        assert leaked_fragments(content(response), SECRETS["twilio"]) == []


# -- the call changelist ----------------------------------------------------------------------


@pytest.fixture
def two_calls():
    """Calls that differ in agent, status, direction, carrier, numbers, transcript and year."""
    first = make_call(
        agent=make_agent(name="Front desk"),
        status=CallStatus.COMPLETED,
        direction=Direction.INBOUND,
        carrier="twilio",
        from_number="+12025550111",
        to_number="+14155550100",
    )
    second = make_call(
        agent=make_agent(name="Collections"),
        status=CallStatus.FAILED,
        direction=Direction.OUTBOUND,
        carrier="telnyx",
        from_number="+14155550200",
        to_number="+442071838750",
    )
    add_transcript(
        first,
        {"seq": 1, "role": "caller", "text": "I would like a refund for my cleaning."},
        {"seq": 2, "role": "agent", "text": "I can help with your refund."},
        {"seq": 3, "role": "caller", "text": "Refund it to my card, please."},
    )
    add_transcript(second, {"seq": 1, "role": "agent", "text": "Your invoice is overdue."})
    Call.objects.filter(pk=first.pk).update(created_at=dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC))
    Call.objects.filter(pk=second.pk).update(created_at=dt.datetime(2025, 7, 1, 9, tzinfo=dt.UTC))
    return SimpleNamespace(first=first, second=second)


def changelist_calls(client, **params) -> list[Call]:
    response = client.get(admin_url("call", "changelist"), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_call_changelist_has_a_date_hierarchy_that_narrows_by_year(admin_client, two_calls):
    response = admin_client.get(admin_url("call", "changelist"))

    assert response.context["cl"].date_hierarchy == "created_at"
    assertContains(response, '<nav class="toplinks">')
    assertContains(response, "?created_at__year=2024")
    assertContains(response, "?created_at__year=2025")
    assert changelist_calls(admin_client, created_at__year="2024") == [two_calls.first]
    assert changelist_calls(admin_client, created_at__year="2025") == [two_calls.second]


@pytest.mark.parametrize(
    ("param", "value_of"),
    [
        ("agent__id__exact", lambda call: call.agent_id),
        ("status__exact", lambda call: call.status),
        ("direction__exact", lambda call: call.direction),
        ("carrier__exact", lambda call: call.carrier),
    ],
    ids=["agent", "status", "direction", "carrier"],
)
def test_call_changelist_filters_narrow_the_list(admin_client, two_calls, param, value_of):
    page = admin_client.get(admin_url("call", "changelist"))
    for call in (two_calls.first, two_calls.second):
        # The sidebar offers the filter, and following it lists only that call.
        assertContains(page, f"?{param}={value_of(call)}")
        assert changelist_calls(admin_client, **{param: str(value_of(call))}) == [call]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("+12025550111", "first"), ("+442071838750", "second"), ("+14155550", "both")],
)
def test_call_changelist_search_finds_calls_by_number(admin_client, two_calls, query, expected):
    found = changelist_calls(admin_client, q=query)

    wanted = {"first": [two_calls.first], "second": [two_calls.second]}
    assert sorted(found, key=lambda c: c.created_at) == wanted.get(
        expected, [two_calls.first, two_calls.second]
    )


def test_call_changelist_search_by_transcript_text_lists_each_call_once(admin_client, two_calls):
    response = admin_client.get(admin_url("call", "changelist"), {"q": "refund"})

    cl = response.context["cl"]
    assert list(cl.result_list) == [two_calls.first]
    assert cl.result_count == 1
    assert content(response).count(admin_url("call", "change", two_calls.first.pk)) == 1
    assert changelist_calls(admin_client, q="overdue") == [two_calls.second]
    assert changelist_calls(admin_client, q="no-such-words") == []


# -- the agent form ---------------------------------------------------------------------------


def test_agent_add_form_offers_registered_reply_handlers(admin_client):
    response = admin_client.get(admin_url("agent", "add"))

    choices = dict(response.context["adminform"].form.fields["reply_handler"].choices)
    assert REPLY_HANDLER_NAME in choices
    assert "" in choices  # "use the LLM prompt"
    assertContains(response, f'<option value="{REPLY_HANDLER_NAME}">', html=False)


def test_pipeline_agent_without_stt_tts_or_reply_handler_shows_field_errors(admin_client):
    response = post_agent_add(admin_client, provider="pipeline", slug="pipe")

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"stt_provider", "tts_provider", "reply_handler"}
    assert "speech-to-text" in errors["stt_provider"][0]
    assert "text-to-speech" in errors["tts_provider"][0]
    assert "reply handler" in errors["reply_handler"][0]
    for message in (errors["stt_provider"][0], errors["tts_provider"][0]):
        assertContains(response, message)
    assert not Agent.objects.filter(slug="pipe").exists()


def test_pipeline_agent_with_a_registered_reply_handler_saves(admin_client):
    deepgram = make_credential("deepgram")
    elevenlabs = make_credential("elevenlabs")

    response = post_agent_add(
        admin_client,
        provider="pipeline",
        slug="pipe",
        stt_provider="deepgram",
        stt_credential=str(deepgram.pk),
        tts_provider="elevenlabs",
        tts_credential=str(elevenlabs.pk),
        reply_handler=REPLY_HANDLER_NAME,
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    agent = Agent.objects.get(slug="pipe")
    assert agent.reply_handler == REPLY_HANDLER_NAME
    assert agent.credential_for("stt") == deepgram


def test_valid_openai_realtime_agent_post_saves(admin_client):
    openai = make_credential("openai")

    response = post_agent_add(admin_client, credential=str(openai.pk))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert response.url == admin_url("agent", "changelist")
    agent = Agent.objects.get(slug="front-desk")
    assert agent.provider == "openai_realtime"
    assert agent.credential == openai
    assert agent.variables == {"company": "Acme Dental"}
    assert agent.rendered_first_message() == "Hi, thanks for calling Acme Dental!"


def test_openai_realtime_agent_with_another_vendors_credential_is_an_error_on_that_field(
    admin_client,
):
    deepgram = make_credential("deepgram")

    response = post_agent_add(admin_client, credential=str(deepgram.pk))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "credential": ["OpenAI Realtime needs a credential from OpenAI, not from Deepgram."]
    }
    assert not Agent.objects.exists()
