"""Keep secrets and callers' personal data out of every log line, vendor libraries' included.

Filters on a logger do not see its children's records, and vendor libraries log through loggers
of their own (``websockets.client`` writes every handshake header at DEBUG; uvicorn hands
``uvicorn.error`` to websockets, which then logs the ``Cookie`` of each browser upgrade; httpx
logs request URLs). So the redaction sits in the ``LogRecord`` factory, which every logger in the
process goes through once a record is enabled: its arguments (or, when masking them one by one
is not enough, its formatted message) are scrubbed there. ``install()`` is called by the app's ``ready()``.

Always masked: credentials in headers (``Authorization``, ``xi-api-key``, ``Cookie``,
``Set-Cookie``, signatures), secret query parameters and JSON fields (``token``,
``stream_token``, signed-URL signatures, API keys), bearer tokens, and the payload of websocket
frames (their type and size stay). Unless ``VOICEAGENTS['LOG_PII']`` is true, phone numbers are
masked too (``mask_number``: only the last four characters).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping

from .conf import get_setting

MASK = "[redacted]"

#: Header names whose value is a secret.
SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "xi-api-key",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "x-twilio-signature",
    "telnyx-signature-ed25519",
)
#: Query-parameter and JSON-field names whose value is a secret.
SECRET_FIELDS = (
    "stream_token",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "auth_token",
    "password",
    "signature",
    "conversation_signature",
    "sig",
    "x-amz-signature",
    "sessionid",
    "csrftoken",
    "client_state",
)

_HEADERS = "|".join(re.escape(name) for name in SECRET_HEADERS)
_FIELDS = "|".join(re.escape(name) for name in SECRET_FIELDS)

_RULES: tuple[tuple[re.Pattern, str], ...] = (
    # websockets' frame dumps ("> TEXT '{...}' [120 bytes]"): keep the type and the size only.
    (
        re.compile(r"^([<>] (?:TEXT|BINARY|CONT)) .*( \[[^\[\]]*\bbytes?\b[^\[\]]*\])$", re.S),
        r"\1\2",
    ),
    # "Authorization: Bearer x" (a header line), "'authorization': 'x'" and
    # "(b'authorization', b'x')" (reprs of header mappings and lists).
    (
        re.compile(rf"""(?i)(["']?\b(?:{_HEADERS})\b["']?\s*[:=,]\s*b?)(["'])(?:(?!\2).)*\2?"""),
        rf"\1\2{MASK}\2",
    ),
    (re.compile(rf"(?im)(^[<>]?\s*\b(?:{_HEADERS})\b\s*:\s*)[^\r\n]+"), rf"\1{MASK}"),
    (re.compile(rf"(?i)(\b(?:{_HEADERS})\b:\s*)[^\r\n'\"]+"), rf"\1{MASK}"),
    # "?token=x&", "stream_token=x" in URLs and form bodies.
    (re.compile(rf"(?i)((?:^|[?&;\s,(])(?:{_FIELDS})=)[^&\s'\";,)]*"), rf"\1{MASK}"),
    # '"stream_token": "x"' and "'api_key': 'x'" in JSON and reprs (the closing quote may have
    # been cut off by an elided message).
    (
        re.compile(rf"""(?i)(["']\b(?:{_FIELDS})\b["']\s*[:=]\s*)(["'])(?:(?!\2).)*\2?"""),
        rf"\1\2{MASK}\2",
    ),
    # Our stream tokens wherever they travel (voiceagents.call.streamtokens: expiry.nonce.mac).
    (re.compile(r"\b\d{9,11}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{40,}"), MASK),
    (re.compile(r"(?i)\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {MASK}"),
)

#: An E.164 number (what carriers send), possibly spaced: "+14155550100", "+1 415 555 0100".
_PHONE_NUMBER = re.compile(r"\+\d[\d \-().]{5,18}\d")


def _mask_phone(match: re.Match) -> str:
    from telephony.carriers.base import mask_number

    return mask_number(re.sub(r"\D", "", match.group(0)))


def redact(text: str, *, pii: bool = False) -> str:
    """``text`` with its secrets masked, and its phone numbers unless ``pii``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    if not pii:
        text = _PHONE_NUMBER.sub(_mask_phone, text)
    return text


def log_pii() -> bool:
    """``VOICEAGENTS['LOG_PII']``: log phone numbers in full (for debugging only)."""
    try:
        return bool(get_setting("LOG_PII", cast=bool))
    except Exception:
        # Logging must work before settings do (and while they are broken).
        return False


class _Guard(threading.local):
    active = False


_guard = _Guard()
_installed_factory = None


def _redacted_arg(value, pii: bool):
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    masked = redact(text, pii=pii)
    return value if masked == text else masked


def _redacted_args(args, pii: bool):
    if isinstance(args, Mapping):
        return {name: _redacted_arg(value, pii) for name, value in args.items()}
    return tuple(_redacted_arg(value, pii) for value in args)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask ``record``'s message, arguments and exception text.

    Arguments are masked one by one where that suffices, so formatters that read them (uvicorn's
    access log) keep working; otherwise (a header name in one argument, its value in the next)
    the message is stored formatted and masked, without arguments.
    """
    if _guard.active:  # a log line from inside the redaction (settings, imports)
        return record
    _guard.active = True
    try:
        pii = log_pii()
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: the handler reports it; only the template is kept.
            message, record.args = str(record.msg), None
        masked = redact(message, pii=pii)
        if masked != message:
            _mask_message(record, masked, pii)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), pii=pii)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, pii=pii)
    finally:
        _guard.active = False
    return record


def _mask_message(record: logging.LogRecord, masked: str, pii: bool) -> None:
    if record.args and isinstance(record.msg, str) and redact(record.msg, pii=pii) == record.msg:
        args = _redacted_args(record.args, pii)
        try:
            enough = redact(record.msg % args, pii=pii) == record.msg % args
        except Exception:
            enough = False
        if enough:
            record.args = args
            return
    record.msg, record.args = masked, None


def install() -> None:
    """Put the redaction into the process's ``LogRecord`` factory (once; the previous factory
    still builds the record)."""
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is _installed_factory:
        return

    def factory(*args, **kwargs):
        return redact_record(current(*args, **kwargs))

    _installed_factory = factory
    logging.setLogRecordFactory(factory)


class RedactingFilter(logging.Filter):
    """The same masking as a handler filter, for handlers fed by records made elsewhere (a queue
    listener, records unpickled from another process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True
