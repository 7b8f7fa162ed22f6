"""Twilio's REST API for live calls, with async httpx (docs/carriers/twilio.md#rest-api).

Updating a live call is ``POST {TWILIO_API_URL}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``,
form-encoded, with HTTP Basic auth (account SID, auth token). A ``Twiml`` parameter replaces the
call's TwiML at once: a ``<Connect><Stream>`` that was running ends (Twilio sends ``stop``).

Failures become ``CarrierAPIError`` with Twilio's ``message`` (and ``code``) and ``status_code``
set; a transport failure has ``status_code=None``. The auth token is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from voiceagents.conf import get_setting
from voiceagents.exceptions import CarrierAPIError, ConfigurationError
from voiceagents.transport import tls

from .account import api_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwilioAccount:
    """What commanding a Twilio call needs: account SID, auth token, REST root and timeout."""

    account_sid: str
    auth_token: str = field(repr=False)
    base_url: str
    timeout: float = 10.0

    @classmethod
    def from_credential(cls, credential) -> TwilioAccount:
        """The account of a Twilio ``Credential`` (``data["account_sid"]``, its secret the auth
        token, its API base URL else ``TWILIO_API_URL``). Raises ``ConfigurationError``."""
        if credential is None:
            raise ConfigurationError("The call's number has no Twilio credential")
        account_sid = (credential.data or {}).get("account_sid", "")
        token = credential.secret
        if not account_sid or not token:
            raise ConfigurationError(
                f"Twilio credential {credential.pk} lacks an account SID or an auth token"
            )
        timeout = float(get_setting("HTTP_TIMEOUT", cast=float))
        return cls(str(account_sid), str(token), api_url(credential), timeout)


def _vendor_message(response: httpx.Response) -> str:
    """Twilio's ``message`` (with its ``code``) from an error body, else the status phrase."""
    try:
        body = response.json()
        message, code = body.get("message"), body.get("code")
    except (ValueError, AttributeError):
        message, code = None, None
    if not message:
        return response.reason_phrase or "no error detail"
    return f"{message} (Twilio error {code})" if code else str(message)


def _call_path(account: TwilioAccount, call_sid: str) -> str:
    return (
        f"/2010-04-01/Accounts/{quote(account.account_sid, safe='')}"
        f"/Calls/{quote(call_sid, safe='')}.json"
    )


def _client_options(account: TwilioAccount) -> dict:
    return {
        "base_url": account.base_url,
        "auth": (account.account_sid, account.auth_token),
        "headers": {"Accept": "application/json"},
        "timeout": account.timeout,
    }


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    """``response`` if Twilio did ``what``; else ``CarrierAPIError`` with Twilio's message."""
    if response.is_error:
        raise CarrierAPIError(
            f"Twilio refused the {what}: {_vendor_message(response)}",
            vendor="twilio",
            status_code=response.status_code,
            response=response,
        )
    return response


def _unreachable(what: str, err: httpx.HTTPError) -> CarrierAPIError:
    return CarrierAPIError(f"Twilio {what} failed: {err.__class__.__name__}", vendor="twilio")


async def update_call(
    account: TwilioAccount,
    call_sid: str,
    params: dict[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict:
    """``POST .../Calls/{call_sid}.json`` with ``params`` (``Twiml``, ``Url``, ``Status``...);
    returns the updated Call resource (JSON)."""
    async with tls.async_client(**_client_options(account), transport=transport) as client:
        try:
            response = await client.post(_call_path(account, call_sid), data=params)
        except httpx.HTTPError as err:
            raise _unreachable("call update", err) from err
    _checked(response, "call update")
    logger.debug("Twilio call %s updated", call_sid)
    try:
        return response.json()
    except ValueError:
        return {}


def fetch_call(account: TwilioAccount, call_sid: str) -> dict:
    """``GET .../Calls/{call_sid}.json``: the Call resource (``status``, ``duration`` in seconds,
    ``price`` — negative, a string, ``null`` until Twilio has rated the call — and
    ``price_unit``). Synchronous: post-call work runs in Celery."""
    with tls.client(**_client_options(account)) as client:
        try:
            response = client.get(_call_path(account, call_sid))
        except httpx.HTTPError as err:
            raise _unreachable("call fetch", err) from err
    try:
        return _checked(response, "call fetch").json()
    except ValueError as err:
        raise CarrierAPIError(
            "Twilio answered the call fetch with no JSON", vendor="twilio"
        ) from err
