"""The cost estimate: rates merged from COST_RATES, started minutes, unpriced usage listed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from tests.voiceagents.factories import make_call
from voiceagents.costs import estimate
from voiceagents.services import finalize_call

pytestmark = pytest.mark.django_db


def by_service(cost: dict) -> dict:
    return {(i["service"], i["unit"]): i for i in cost["items"]}


def test_carriers_bill_started_minutes_at_the_directions_rate():
    inbound = make_call(carrier="twilio", direction="inbound", duration=timedelta(seconds=61))
    outbound = make_call(carrier="telnyx", direction="outbound", duration=timedelta(seconds=30))
    assert by_service(estimate(inbound))[("twilio", "minute")]["quantity"] == 2
    assert estimate(inbound)["total"] == pytest.approx(2 * 0.0085)
    assert estimate(outbound)["total"] == pytest.approx(0.007)


def test_cost_rates_override_only_what_they_name(voiceagents_settings):
    voiceagents_settings["COST_RATES"] = {
        "currency": "EUR",
        "carriers": {"twilio": {"inbound": 0.01}},
        "services": {"openai_realtime": {"my-model": {"output_audio_tokens": 0.001}}},
    }
    call = make_call(
        carrier="twilio",
        duration=timedelta(seconds=120),
        metrics={
            "usage": [
                {"service": "openai_realtime", "model": "my-model", "output_audio_tokens": 10},
                {"service": "tts:elevenlabs", "model": "eleven_flash_v2_5", "characters": 1000},
            ]
        },
    )
    cost = estimate(call)
    items = by_service(cost)
    assert cost["currency"] == "EUR"
    assert items[("twilio", "minute")]["amount"] == pytest.approx(0.02)
    assert items[("openai_realtime", "output audio token")]["amount"] == pytest.approx(0.01)
    # Not overridden: the default rate is kept.
    assert items[("tts:elevenlabs", "character")]["amount"] == pytest.approx(0.10)


def test_usage_without_a_rate_is_listed_not_guessed():
    call = make_call(
        duration=timedelta(seconds=10),
        metrics={
            "usage": [
                {"service": "openai_realtime", "model": "gpt-future", "output_audio_tokens": 7}
            ]
        },
    )
    cost = estimate(call)
    assert cost["unpriced"] == [
        {
            "service": "openai_realtime",
            "model": "gpt-future",
            "unit": "output_audio_tokens",
            "quantity": 7,
        }
    ]
    assert set(by_service(cost)) == {("twilio", "minute")}


def test_elevenlabs_conversations_are_priced_by_the_minute():
    call = make_call(provider="elevenlabs_convai", duration=timedelta(seconds=90))
    items = by_service(estimate(call))
    assert items[("elevenlabs_convai", "minute")]["quantity"] == 1.5
    assert items[("elevenlabs_convai", "minute")]["amount"] == pytest.approx(0.15)


def test_the_carriers_own_price_replaces_its_estimate():
    call = make_call(duration=timedelta(seconds=200))
    cost = estimate(call, carrier_price=0.0312, carrier_currency="usd")
    (carrier,) = [i for i in cost["items"] if i["what"] == "carrier"]
    assert (carrier["amount"], carrier["source"]) == (0.0312, "carrier")


def test_finalize_stores_the_estimate_and_the_call_page_shows_it(admin_client):
    call = make_call(
        duration=timedelta(seconds=65),
        metrics={
            "usage": [
                {"service": "openai_realtime", "model": "gpt-future", "input_audio_tokens": 3}
            ]
        },
    )
    finalize_call(call.pk)
    call.refresh_from_db()
    assert call.cost["total"] == pytest.approx(2 * 0.0085)
    page = admin_client.get(
        reverse("admin:voiceagents_call_change", args=[call.pk])
    ).content.decode()
    assert "0.0170 USD" in page
    assert "Not priced (no rate in COST_RATES)" in page and "gpt-future" in page


def test_a_call_not_ended_is_not_estimated(admin_client):
    call = make_call(status="in_progress")
    finalize_call(call.pk)
    call.refresh_from_db()
    assert call.cost == {}
    page = admin_client.get(
        reverse("admin:voiceagents_call_change", args=[call.pk])
    ).content.decode()
    assert "Not estimated yet" in page
