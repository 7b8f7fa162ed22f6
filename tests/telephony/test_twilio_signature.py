"""``X-Twilio-Signature``: the vectors of docs/carriers/twilio.md#webhook-signature, variants,
secrets and the stream handshake.

Each vector is checked against the twilio SDK's ``RequestValidator`` too, so the table itself is
tested, and our module never signs what it later verifies.
"""

from __future__ import annotations

import hashlib

import pytest
from twilio.request_validator import RequestValidator

from telephony.carriers.twilio import signature
from tests.fakes import twilio as fake
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

KEY = "12345"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "From": "+15551230000",
    "To": "+15559870000",
    "CallStatus": "ringing",
    "Direction": "inbound",
    "AccountSid": "AC123",
}
JSON_BODY = b'{"hello":"world"}'
JSON_URL = (
    "https://example.com/json?bodySHA256="
    "93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"
)

VECTORS = [
    ("https://example.com/voice", VECTOR_PARAMS, "HMAC_SHA1", "tHG+ePVjzvH59XBK+0SIVk5n7Do="),
    (
        "https://example.com/voice",
        VECTOR_PARAMS,
        "HMAC_SHA256",
        "ho5x5OgNAiSvKeEe6nI/1IZPxRh2wsTsBGqxQEZB4TY=",
    ),
    ("wss://example.com/media-stream", None, "HMAC_SHA1", "XFfwGS2Ev7f9qAP9MmRoMS7C724="),
    (JSON_URL, None, "HMAC_SHA1", "lbLpcDw47COmYeH7A4RcoEfrT/s="),
]


@pytest.mark.parametrize(("url", "params", "algorithm", "expected"), VECTORS)
def test_protocol_vectors_match_the_twilio_sdk(url, params, algorithm, expected):
    assert RequestValidator(KEY).compute_signature(url, params or {}, algorithm) == expected


@pytest.mark.parametrize(("url", "params", "algorithm", "expected"), VECTORS)
def test_protocol_vectors_match_our_module(url, params, algorithm, expected):
    assert signature.compute_signature(url, params, KEY, algorithm) == expected
    assert signature.signature_matches(url, params, expected, ["wrong", KEY], algorithm)
    assert not signature.signature_matches(url, params, expected, ["wrong"], algorithm)


def test_json_body_vector_checks_the_body_hash():
    scheme = signature.SigningScheme(signature.HMAC_SHA1, (KEY,))
    good = "lbLpcDw47COmYeH7A4RcoEfrT/s="
    signature.verify_request(JSON_URL, None, JSON_BODY, good, scheme)
    with pytest.raises(WebhookValidationFailure):
        signature.verify_request(JSON_URL, None, b'{"hello":"there"}', good, scheme)
    assert hashlib.sha256(JSON_BODY).hexdigest() in JSON_URL


def test_a_non_form_body_without_body_hash_is_refused():
    url = "https://example.com/json"
    scheme = signature.SigningScheme(signature.HMAC_SHA1, (KEY,))
    valid_for_url_alone = fake.sign(url, None, KEY)
    with pytest.raises(WebhookValidationFailure, match="bodySHA256"):
        signature.verify_request(url, None, JSON_BODY, valid_for_url_alone, scheme)


def test_handshake_vector_verifies():
    assert signature.verify_stream_handshake(
        "/media-stream", "XFfwGS2Ev7f9qAP9MmRoMS7C724=", [KEY], base_url="https://example.com"
    )
    assert not signature.verify_stream_handshake(
        "/media-stream", "XFfwGS2Ev7f9qAP9MmRoMS7C724=", ["other"], base_url="https://example.com"
    )
    assert not signature.verify_stream_handshake(
        "/media-stream", None, [KEY], base_url="https://example.com"
    )


@pytest.mark.parametrize(
    "signed_url",
    ["https://voice.example.test:443/voice", "https://voice.example.test/voice"],
)
def test_default_port_may_or_may_not_be_signed(signed_url):
    sig = fake.sign(signed_url, VECTOR_PARAMS, KEY)
    assert signature.signature_matches(
        "https://voice.example.test/voice", VECTOR_PARAMS, sig, [KEY]
    )
    assert signature.signature_matches(
        "https://voice.example.test:443/voice", VECTOR_PARAMS, sig, [KEY]
    )


def test_repeated_params_are_sorted_by_name_then_value():
    params = {"StatusCallbackEvent": ["ringing", "answered"], "A": "1"}
    sig = fake.sign("https://example.com/x", params, KEY)
    assert signature.compute_signature("https://example.com/x", params, KEY) == sig


def test_a_non_ascii_signature_header_is_refused_not_crashed():
    assert not signature.signature_matches("https://example.com/x", None, "sïgnature", [KEY])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        ("key=abc,algorithm=HMAC_SHA256", ("abc", "HMAC_SHA256")),
        (" algorithm = HMAC_SHA256 , key = abc ", ("abc", "HMAC_SHA256")),
        ("key=abc", ("abc", None)),
    ],
)
def test_parses_the_signature_settings_header(header, expected):
    assert signature.parse_signature_settings(header) == expected


def test_signing_scheme_without_settings_uses_auth_tokens():
    scheme = signature.signing_scheme(None, lambda: ["t1", "t2"])
    assert (scheme.algorithm, scheme.secrets) == ("HMAC_SHA1", ("t1", "t2"))
    assert "t1" not in repr(scheme)


@pytest.mark.django_db
def test_signing_scheme_without_any_token_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="TWILIO_AUTH_TOKEN"):
        signature.signing_scheme(None, lambda: [])


def test_signing_scheme_with_a_shared_key(voiceagents_settings):
    voiceagents_settings["TWILIO_SHARED_KEYS"] = {"kid": "shared-secret"}
    scheme = signature.signing_scheme(
        "key=kid,algorithm=HMAC_SHA256", lambda: pytest.fail("no tokens")
    )
    assert (scheme.algorithm, scheme.secrets) == ("HMAC_SHA256", ("shared-secret",))


@pytest.mark.parametrize(
    "header",
    ["key=unknown,algorithm=HMAC_SHA256", "key=kid,algorithm=HMAC_MD5", "algorithm=HMAC_SHA256"],
)
def test_signing_scheme_refuses_unknown_keys_and_algorithms(voiceagents_settings, header):
    voiceagents_settings["TWILIO_SHARED_KEYS"] = {"kid": "shared-secret"}
    with pytest.raises(WebhookValidationFailure):
        signature.signing_scheme(header, lambda: ["token"])


def test_shared_keys_may_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("TWILIO_SHARED_KEYS", '{"kid": "s"}')
    assert signature.shared_keys() == {"kid": "s"}
    monkeypatch.setenv("TWILIO_SHARED_KEYS", "not json")
    with pytest.raises(ConfigurationError):
        signature.shared_keys()


# -- token candidates ------------------------------------------------------------------------


def test_auth_tokens_for_an_account_are_its_credentials_then_the_setting(
    make_twilio_credential, voiceagents_settings
):
    make_twilio_credential("old-token")
    make_twilio_credential("new-token")
    make_twilio_credential("another-account", account_sid="AC" + "f" * 32)
    voiceagents_settings["TWILIO_AUTH_TOKEN"] = ["setting-1", "setting-2"]
    assert signature.auth_tokens_for(fake.ACCOUNT_SID) == [
        "old-token",
        "new-token",
        "setting-1",
        "setting-2",
    ]
    assert signature.auth_tokens_for("") == ["setting-1", "setting-2"]
    assert set(signature.all_auth_tokens()) == {
        "old-token",
        "new-token",
        "another-account",
        "setting-1",
        "setting-2",
    }


def test_auth_token_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "env-token")
    assert signature.auth_tokens_for(fake.ACCOUNT_SID) == ["env-token"]


def test_undecryptable_credentials_are_skipped(make_twilio_credential, caplog):
    broken = make_twilio_credential("unused")
    broken.encrypted_secret = "not-a-fernet-token"
    broken.save()
    make_twilio_credential("good-token")
    assert signature.auth_tokens_for(fake.ACCOUNT_SID) == ["good-token"]
    assert "cannot be decrypted" in caplog.text


# -- media-stream handshake (for the consumer) -----------------------------------------------


def _scope(headers, path=fake.MEDIA_PATH, query_string=b""):
    return {"type": "websocket", "path": path, "query_string": query_string, "headers": headers}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_connections")
async def test_stream_handshake_signed_with_a_stored_token_passes(twilio_credential):
    await signature.acheck_stream_handshake(_scope(fake.handshake_headers(fake.AUTH_TOKEN)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_connections")
async def test_stream_handshake_with_a_bad_or_missing_signature_fails(twilio_credential):
    with pytest.raises(WebhookValidationFailure):
        await signature.acheck_stream_handshake(
            _scope(fake.handshake_headers(fake.OTHER_AUTH_TOKEN))
        )
    with pytest.raises(WebhookValidationFailure):
        await signature.acheck_stream_handshake(_scope([(b"host", b"voice.example.test")]))
    other_path = fake.handshake_headers(fake.AUTH_TOKEN, path="/elsewhere/")
    with pytest.raises(WebhookValidationFailure):
        await signature.acheck_stream_handshake(_scope(other_path))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_connections")
async def test_stream_handshake_without_any_token_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        await signature.acheck_stream_handshake(_scope(fake.handshake_headers()))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_connections")
async def test_stream_handshake_check_can_be_disabled(voiceagents_settings):
    voiceagents_settings["VERIFY_SIGNATURES"] = False
    await signature.acheck_stream_handshake(_scope([]))


def test_stream_handshake_with_a_query_string_accepts_both_canonicalisations():
    base = "https://voice.example.test"
    in_url = fake.sign("wss://voice.example.test/m/?a=1", None, KEY)
    as_params = fake.sign("wss://voice.example.test/m/", {"a": "1"}, KEY)
    for sig in (in_url, as_params):
        assert signature.verify_stream_handshake(
            "/m/", sig, [KEY], query_string="a=1", base_url=base
        )
    bare = fake.sign("wss://voice.example.test/m/", None, KEY)
    assert not signature.verify_stream_handshake(
        "/m/", bare, [KEY], query_string="a=1", base_url=base
    )
