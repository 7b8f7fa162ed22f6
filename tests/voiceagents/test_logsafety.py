"""The log redaction (voiceagents.logsafety) on the shapes that vendor libraries and we log."""

from __future__ import annotations

import logging

import pytest

from voiceagents.call import streamtokens
from voiceagents.logsafety import MASK, redact

TOKEN = "1733250000.abcdefghij." + "A" * 43


@pytest.mark.parametrize(
    "line, secret",
    [
        ("> Authorization: Bearer sk-live-123456", "sk-live-123456"),
        ("< Cookie: sessionid=abc123def; csrftoken=zzz", "abc123def"),
        ("> Set-Cookie: sessionid=abc123def; HttpOnly", "abc123def"),
        ("> xi-api-key: sk_eleven_123456", "sk_eleven_123456"),
        ("{'authorization': 'Bearer sk-x1234567', 'accept': '*/*'}", "sk-x1234567"),
        ("[(b'cookie', b'sessionid=q9q9q9q9')]", "q9q9q9q9"),
        ("X-Twilio-Signature: 1ir/9wvpEYjNecWIFX0Rrb6mY+Y=", "1ir/9wvpEYjNecWIFX0Rrb6mY+Y="),
        (f'"WebSocket /telephony/telnyx/media/?token={TOKEN}" [accepted]', TOKEN),
        ("wss://x/convai/conversation?agent_id=a&conversation_signature=s1g2n3", "s1g2n3"),
        (f'{{"call_id": "c", "stream_token": "{TOKEN}"}}', TOKEN),
        (f"stream for call c refused: token {TOKEN} expired", TOKEN),
        ("POST http://127.0.0.1:5/v1/x?api_key=k3y999&a=1", "k3y999"),
        (
            '< TEXT \'{"type":"session.update","instructions":"Hi +14155550100"}\' [900 bytes]',
            "Hi +14155550100",
        ),
    ],
)
def test_secrets_are_masked(line, secret):
    masked = redact(line)
    assert secret not in masked
    assert MASK in masked or "[900 bytes]" in masked


def test_a_frame_dump_keeps_its_type_and_size():
    assert redact('> TEXT \'{"event": "media"}\' [120 bytes]') == "> TEXT [120 bytes]"
    assert redact("< BINARY 7b 22 [2 bytes, continued]") == "< BINARY [2 bytes, continued]"


def test_phone_numbers_are_masked_unless_pii_is_allowed():
    line = "call from +14155550100 to +1 415 555 0199 at 2026-12-03 21:35:12+00:00"
    assert redact(line) == "call from …0100 to …0199 at 2026-12-03 21:35:12+00:00"
    assert redact(line, pii=True) == line


def test_ordinary_lines_are_left_alone():
    line = "call 42 ended: caller_hangup after 12.5 s (3 turns, key frames 100)"
    assert redact(line) == line


def test_every_logger_goes_through_the_redaction(caplog, settings):
    """Installed by the app: a vendor's child logger, with the secret in the arguments."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("websockets.client").debug("> %s: %s", "Authorization", "Bearer sk-abc12345")
    logging.getLogger("some.vendor.deep.child").info("url %s", "wss://h/?token=" + TOKEN)
    try:
        raise ValueError(f"bad token {streamtokens.mint('c1')}")
    except ValueError:
        logging.getLogger("voiceagents.x").exception("failed")
    text = caplog.text
    assert "sk-abc12345" not in text and TOKEN not in text and "bad token [redacted]" in text
    assert text.count(MASK) == 3


def test_log_pii_unmasks_numbers(caplog, settings):
    caplog.set_level(logging.INFO)
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "LOG_PII": True}
    logging.getLogger("voiceagents.x").info("caller %s", "+14155550100")
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "LOG_PII": False}
    logging.getLogger("voiceagents.x").info("caller %s", "+14155550100")
    assert [r.getMessage() for r in caplog.records] == ["caller +14155550100", "caller …0100"]


def test_arguments_stay_arguments_when_masking_them_is_enough(caplog):
    """uvicorn's access formatter unpacks ``record.args``: they must keep their shape (a logger
    of our own here: uvicorn's may not propagate after another test ran a server)."""
    caplog.set_level(logging.DEBUG)
    args = ("127.0.0.1:5", "GET", "/media/?token=" + TOKEN, "1.1", 101)
    logging.getLogger("tests.logsafety.access").info('%s - "%s %s HTTP/%s" %d', *args)
    (record,) = caplog.records
    assert record.args == ("127.0.0.1:5", "GET", f"/media/?token={MASK}", "1.1", 101)
    assert TOKEN not in record.getMessage()
    logging.getLogger("websockets.client").debug("> %s: %s", "xi-api-key", "sk_eleven_123456")
    assert caplog.records[-1].getMessage() == f"> xi-api-key: {MASK}"
