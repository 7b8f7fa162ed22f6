"""Ed25519 webhook signatures (docs/carriers/telnyx.md#webhook-signature), signed by
``tests.fakes.telnyx`` with ``cryptography`` directly, never by the module under test."""

from __future__ import annotations

import base64
import time

import pytest

from telephony.carriers.telnyx import signature
from telephony.carriers.telnyx.signature import PublicKey
from tests.fakes import telnyx as fake
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

BODY = fake.call_initiated("v3:abc")
KEY = fake.keypair("telnyx-key-1")
OTHER = fake.keypair("telnyx-key-2")
NOW = 1_800_000_000


def verify(key_pairs, body=BODY, *, headers=None, now=NOW):
    headers = fake.signed_headers(body, KEY, NOW) if headers is None else headers
    keys = [PublicKey(k.public_b64, i) for i, k in enumerate(key_pairs)]
    return signature.verify(
        body,
        headers.get("telnyx-signature-ed25519"),
        headers.get("telnyx-timestamp"),
        keys,
        now=now,
    )


def test_accepts_a_valid_signature_and_says_which_key_signed():
    matched = verify([OTHER, KEY])
    assert matched == [PublicKey(KEY.public_b64, 1)]


def test_rotated_keys_each_verify():
    for signer in (KEY, OTHER):
        headers = fake.signed_headers(BODY, signer, NOW)
        assert verify([KEY, OTHER], headers=headers)


def test_rejects_a_signature_made_with_another_key():
    with pytest.raises(WebhookValidationFailure, match="does not match"):
        verify([OTHER])


def test_rejects_a_body_changed_after_signing():
    headers = fake.signed_headers(BODY, KEY, NOW)
    with pytest.raises(WebhookValidationFailure):
        verify([KEY], BODY.replace(b"v3:abc", b"v3:abd"), headers=headers)


def test_rejects_a_timestamp_changed_after_signing():
    headers = fake.signed_headers(BODY, KEY, NOW)
    headers["telnyx-timestamp"] = str(NOW + 1)
    with pytest.raises(WebhookValidationFailure):
        verify([KEY], headers=headers)


@pytest.mark.parametrize("missing", ["telnyx-signature-ed25519", "telnyx-timestamp"])
def test_rejects_a_missing_header(missing):
    headers = fake.signed_headers(BODY, KEY, NOW)
    del headers[missing]
    with pytest.raises(WebhookValidationFailure, match="no telnyx"):
        verify([KEY], headers=headers)


@pytest.mark.parametrize(
    "bad",
    ["not base64!!", base64.b64encode(b"x" * 63).decode(), ""],
    ids=["junk", "63-bytes", "empty"],
)
def test_rejects_a_malformed_signature(bad):
    headers = {**fake.signed_headers(BODY, KEY, NOW), "telnyx-signature-ed25519": bad}
    with pytest.raises(WebhookValidationFailure):
        verify([KEY], headers=headers)


@pytest.mark.parametrize(
    ("age", "ok"),
    [
        (0, True),
        (299, True),
        (301, False),
        (3600, False),
        (-30, True),
        (-61, False),
        (-3600, False),
    ],
    ids=["now", "299s-old", "301s-old", "1h-old", "30s-ahead", "61s-ahead", "1h-ahead"],
)
def test_timestamp_window(age, ok):
    signed_at = NOW - age
    headers = fake.signed_headers(BODY, KEY, signed_at)
    if ok:
        assert verify([KEY], headers=headers)
    else:
        with pytest.raises(WebhookValidationFailure, match="stale|future"):
            verify([KEY], headers=headers)


def test_rejects_a_timestamp_that_is_not_a_number():
    headers = {**fake.signed_headers(BODY, KEY, NOW), "telnyx-timestamp": "yesterday"}
    with pytest.raises(WebhookValidationFailure):
        verify([KEY], headers=headers)


def test_default_clock_is_the_real_one():
    now = int(time.time())
    headers = fake.signed_headers(BODY, KEY, now)
    keys = [PublicKey(KEY.public_b64)]
    assert signature.verify(
        BODY, headers["telnyx-signature-ed25519"], headers["telnyx-timestamp"], keys
    )


def test_invalid_keys_are_skipped_not_fatal():
    keys = [PublicKey("bm90IGEga2V5"), PublicKey(KEY.public_b64)]
    headers = fake.signed_headers(BODY, KEY, NOW)
    assert signature.verify(
        BODY, headers["telnyx-signature-ed25519"], headers["telnyx-timestamp"], keys, now=NOW
    )


# -- which keys ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_telnyx_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("TELNYX_PUBLIC_KEY", raising=False)


@pytest.mark.django_db
def test_keys_come_from_every_telnyx_credential_line_then_the_setting(voiceagents_settings):
    from tests.telephony.conftest import create_credential

    first = create_credential(
        "telnyx", "key-a", data={"webhook_public_key": f"{KEY.public_b64}\n\n{OTHER.public_b64}\n"}
    )
    voiceagents_settings["TELNYX_PUBLIC_KEY"] = [fake.keypair("setting").public_b64, "not-a-key"]
    keys = signature.webhook_public_keys()
    assert keys == [
        PublicKey(KEY.public_b64, first.pk),
        PublicKey(OTHER.public_b64, first.pk),
        PublicKey(fake.keypair("setting").public_b64, None),
    ]


@pytest.mark.django_db
def test_a_single_key_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", KEY.public_b64)
    assert signature.webhook_public_keys() == [PublicKey(KEY.public_b64)]


@pytest.mark.django_db
def test_no_key_at_all_names_the_setting():
    with pytest.raises(ConfigurationError, match="TELNYX_PUBLIC_KEY"):
        signature.webhook_public_keys()
