"""The admin's "Test connection" of a Twilio credential.

The test fetches the account resource,
``GET {TWILIO_API_URL}/2010-04-01/Accounts/{AccountSid}.json`` with HTTP Basic auth (account SID,
auth token): free, and it says whether the account is active.
"""

from __future__ import annotations

from urllib.parse import quote

from voiceagents.conf import get_setting
from voiceagents.connection import ConnectionResult, field_of, probe

DEFAULT_API_URL = "https://api.twilio.com"


def api_url(credential) -> str:
    """The REST root: the credential's override, else ``TWILIO_API_URL``, else Twilio's."""
    url = credential.api_base_url or get_setting(
        "API_URL", vendor="twilio", default=DEFAULT_API_URL
    )
    return str(url).rstrip("/")


def check_connection(credential) -> ConnectionResult:
    """Fetch the account with the credential's SID and auth token."""
    account_sid = (credential.data or {}).get("account_sid", "")
    if not account_sid:
        return ConnectionResult(False, "Enter the account SID, then test the connection again.")
    secret = credential.secret
    url = f"{api_url(credential)}/2010-04-01/Accounts/{quote(account_sid)}.json"

    def accepted(body) -> str:
        name = field_of(body, "friendly_name") or account_sid
        status = field_of(body, "status") or "unknown"
        return f"Twilio accepted the auth token for account “{name}” (status: {status})."

    return probe("Twilio", url, secret=secret, accepted=accepted, auth=(account_sid, secret))
