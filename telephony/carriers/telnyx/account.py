"""The admin's "Test connection" of a Telnyx credential.

The test reads the balance, ``GET {TELNYX_API_URL}/balance`` with the API key as a Bearer token:
read-only, free, and the request Telnyx's own guide uses to check a key.
"""

from __future__ import annotations

from voiceagents.connection import ConnectionResult, field_of, probe

from .rest import TelnyxAccount


def check_connection(credential) -> ConnectionResult:
    """Read the account balance with the credential's API key."""
    account = TelnyxAccount.from_credential(credential)

    def accepted(body) -> str:
        data = field_of(body, "data")
        credit, currency = field_of(data, "available_credit"), field_of(data, "currency")
        amount = " ".join(str(part) for part in (credit, currency) if part)
        shown = f" (available credit: {amount})" if credit else ""
        return f"Telnyx accepted the API key{shown}."

    return probe(
        "Telnyx",
        f"{account.base_url}/balance",
        secret=account.api_key,
        accepted=accepted,
        headers={"Authorization": f"Bearer {account.api_key}", "Accept": "application/json"},
    )
