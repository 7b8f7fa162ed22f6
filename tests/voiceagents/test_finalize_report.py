"""finalize_call fetches ElevenLabs' record of the conversation when asked to (fake ElevenLabs API)."""

from __future__ import annotations

import logging

import pytest

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from tests.voiceagents.factories import make_agent, make_call, make_credential
from voiceagents.models import Call
from voiceagents.services import finalize_call

pytestmark = pytest.mark.django_db

REPORT = {
    "conversation_id": "conv_01",
    "status": "done",
    "transcript": [
        {"role": "agent", "message": "Hi, thanks for calling.", "time_in_call_secs": 0},
        {"role": "user", "message": "Is the clinic open today?", "time_in_call_secs": 3},
    ],
    "analysis": {"call_successful": "success", "transcript_summary": "Asked about hours."},
}


@pytest.fixture
def fake():
    with FakeElevenLabsAPI() as api:
        api.conversations["conv_01"] = REPORT
        yield api


@pytest.fixture
def fetch_on(voiceagents_settings):
    voiceagents_settings["ELEVENLABS_CONVAI_FETCH_CONVERSATION"] = True


def convai_call(fake, *, key=API_KEY, **fields) -> Call:
    credential = make_credential("elevenlabs", secret=key, api_base_url=fake.url)
    agent = make_agent(provider="elevenlabs_convai", credential=credential)
    fields.setdefault("provider_session_id", "conv_01")
    return make_call(agent=agent, provider="elevenlabs_convai", **fields)


def test_the_conversation_is_stored_in_the_provider_report(fake, fetch_on):
    call = convai_call(fake)
    assert finalize_call(call.pk) == "completed"
    call.refresh_from_db()
    assert call.provider_report == REPORT
    [request] = fake.of("GET", "/v1/convai/conversations/")
    assert request.path == "/v1/convai/conversations/conv_01"
    assert request.headers["xi-api-key"] == API_KEY

    finalize_call(call.pk)  # idempotent: stored once, not fetched again
    assert len(fake.of("GET", "/v1/convai/conversations/")) == 1


def test_nothing_is_fetched_unless_the_setting_is_on(fake):
    call = convai_call(fake)
    finalize_call(call.pk)
    call.refresh_from_db()
    assert call.provider_report == {}
    assert fake.requests == []


def test_nothing_is_fetched_without_a_conversation_id_or_for_other_providers(fake, fetch_on):
    finalize_call(convai_call(fake, provider_session_id="").pk)
    finalize_call(make_call(provider="openai_realtime", provider_session_id="sess_1").pk)
    assert fake.requests == []


def test_a_vendor_error_is_logged_not_raised(fake, fetch_on, caplog):
    call = convai_call(fake, key="sk_wrong")
    with caplog.at_level(logging.WARNING, logger="voiceagents.services"):
        assert finalize_call(call.pk) == "completed"
    call.refresh_from_db()
    assert call.provider_report == {}
    assert "Invalid API key" in caplog.text


def test_an_unknown_conversation_is_logged_not_raised(fake, fetch_on, caplog):
    call = convai_call(fake, provider_session_id="conv_unknown")
    with caplog.at_level(logging.WARNING, logger="voiceagents.services"):
        finalize_call(call.pk)
    assert Call.objects.get(pk=call.pk).provider_report == {}
    assert "conv_unknown not found" in caplog.text


def test_the_call_page_shows_the_conversation_id_and_the_report(fake, fetch_on, admin_client):
    call = convai_call(fake)
    finalize_call(call.pk)
    page = admin_client.get(f"/admin/voiceagents/call/{call.pk}/change/").content.decode()
    assert "conv_01" in page
    first_key = next(iter(REPORT))
    assert f"&quot;{first_key}&quot;" in page  # the report, as indented JSON
    listing = admin_client.get("/admin/voiceagents/call/?q=conv_01").content.decode()
    assert str(call.pk) in listing
