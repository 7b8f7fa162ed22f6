"""Signed, expiring links to a call's recording, for receivers of the customer webhook.

Recordings are never public media (the admin serves them to staff only). A system that gets the
call webhook has no admin account, so the webhook carries a link that works without one, for
``RECORDING_LINK_TTL`` seconds: the call's id signed with Django's ``SECRET_KEY``
(``TimestampSigner``, its own salt). The link names the call and nothing else; it stops working
when it expires, when ``SECRET_KEY`` changes, or when the recording is deleted (retention).
"""

from __future__ import annotations

from django.core import signing
from django.http import Http404
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import ranges
from .conf import get_setting
from .models import Call

_SALT = "voiceagents.recording-link"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_SALT)


def recording_url(call: Call) -> str | None:
    """An absolute link to ``call``'s recording (``PUBLIC_URL`` based), or ``None`` without one."""
    if not call.recording:
        return None
    token = _signer().sign(str(call.pk))
    path = reverse("voiceagents:recording_link", args=[token])
    base = (get_setting("PUBLIC_URL") or "").rstrip("/")
    return f"{base}{path}"


def call_for_token(token: str) -> Call:
    """The call a valid, unexpired ``token`` names; ``Http404`` for anything else (no detail is
    given away: an expired link and a forged one look the same)."""
    max_age = int(get_setting("RECORDING_LINK_TTL", cast=int))
    try:
        call_id = _signer().unsign(token, max_age=max_age)
    except signing.BadSignature as err:  # SignatureExpired is one
        raise Http404("No such recording.") from err
    call = Call.objects.filter(pk=call_id).first()
    if call is None or not call.recording:
        raise Http404("No such recording.")
    return call


@require_GET
def recording_link(request, token: str):
    """Serve the recording a signed link names, in byte ranges when asked."""
    call = call_for_token(token)
    try:
        size = call.recording.size
        handle = call.recording.open("rb")
    except FileNotFoundError as err:
        raise Http404("No such recording.") from err
    response = ranges.file_response(
        request, handle, size=size, content_type="audio/wav", filename=f"call-{call.pk}.wav"
    )
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
