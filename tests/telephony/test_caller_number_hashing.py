"""HASH_CALLER_NUMBERS: callers' numbers stored as keyed hashes that still group calls."""

import pytest
from django.urls import reverse

from tests.fakes import twilio as fake
from tests.voiceagents.factories import make_call
from voiceagents.models import Call, Direction
from voiceagents.numberhash import hash_number

pytestmark = pytest.mark.django_db


@pytest.fixture
def hashing(settings):
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "HASH_CALLER_NUMBERS": True}


def test_the_hash_groups_one_number_however_written_and_keeps_two_digits(settings):
    hashed = hash_number("+1 (415) 555-0100")
    assert hashed == hash_number("+14155550100") != hash_number("+14155550101")
    assert hashed.startswith("h:") and hashed.endswith(":00") and "4155550" not in hashed
    assert hash_number(hashed) == hashed  # saving a row again does not hash the hash
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789"
    assert hash_number("+14155550100") != hashed  # keyed: not a plain hash anyone can compute


def test_an_inbound_call_through_the_webhook_stores_the_hash(client, hashing, twilio_number):
    for _ in range(2):
        params = fake.voice_params(From="+15551230000")
        assert (
            fake.signed_post(client, reverse("telephony:twilio_voice"), params).status_code == 200
        )
    fake.signed_post(
        client, reverse("telephony:twilio_voice"), fake.voice_params(From="+15551239999")
    )
    numbers = list(Call.objects.order_by("created_at").values_list("from_number", flat=True))
    assert numbers[0] == numbers[1] == hash_number("+15551230000")
    assert numbers[2] == hash_number("+15551239999") and numbers[2].endswith(":99")
    assert "+1555" not in "".join(numbers)


def test_outbound_calls_and_the_default_store_numbers_as_they_are(hashing, settings):
    outbound = make_call(direction=Direction.OUTBOUND, from_number="+15550000001")
    assert outbound.from_number == "+15550000001"
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "HASH_CALLER_NUMBERS": False}
    assert make_call(from_number="+15550000002").from_number == "+15550000002"
