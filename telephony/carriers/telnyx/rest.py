"""Telnyx Call Control commands over REST, with async httpx
(docs/carriers/telnyx.md#call-control-commands).

Every command is ``POST {TELNYX_API_URL}/calls/{call_control_id}/actions/<name>`` with a Bearer API
key, and answers ``{"data": {"result": "ok"}}``. Each carries a ``command_id``: Telnyx ignores a
repeated one for the same call, so a command retried after a lost response (or by a retried
webhook, with the same deterministic id) is carried out once.

Failures become ``CarrierAPIError`` with the vendor's ``errors[].detail`` in the message and
``status_code``/``response`` set; a transport failure has ``status_code=None``. Retries are the
caller's decision (``is_transient``). The API key is never logged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from voiceagents.conf import get_setting
from voiceagents.exceptions import CarrierAPIError, ConfigurationError
from voiceagents.transport import tls

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telnyx.com/v2"


@dataclass(frozen=True)
class TelnyxAccount:
    """What commanding a Telnyx call needs: the API key, base URL and timeout, snapshotted."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_API_URL
    timeout: float = 10.0

    @classmethod
    def from_credential(cls, credential=None) -> TelnyxAccount:
        """The account of a Telnyx ``Credential`` (its secret is the API key), else settings.

        Raises ``ConfigurationError`` when no API key is available.
        """
        secret = credential.secret if credential is not None else None
        api_key = get_setting("API_KEY", vendor="telnyx", value=secret, default="")
        if not api_key:
            raise ConfigurationError(
                "No Telnyx API key: give the number a Telnyx credential (its secret is the API "
                "key), or set VOICEAGENTS['TELNYX_API_KEY'] or the TELNYX_API_KEY environment "
                "variable"
            )
        base_url = (credential.api_base_url if credential is not None else "") or get_setting(
            "API_URL", vendor="telnyx", default=DEFAULT_API_URL
        )
        timeout = float(get_setting("HTTP_TIMEOUT", cast=float))
        return cls(api_key=str(api_key), base_url=str(base_url).rstrip("/"), timeout=timeout)


def is_transient(error: CarrierAPIError) -> bool:
    """True for failures worth retrying later: no answer at all, or a 5xx/429 from Telnyx."""
    status = error.status_code
    return status is None or status >= 500 or status == 429


def _vendor_message(response: httpx.Response) -> str:
    """The ``errors[].detail`` (else ``title``) of a Telnyx error body, joined."""
    try:
        errors = response.json().get("errors") or []
        texts = [str(e.get("detail") or e.get("title") or e.get("code")) for e in errors]
    except (ValueError, AttributeError, TypeError):
        texts = []
    return "; ".join(t for t in texts if t) or response.reason_phrase or "no error detail"


def error_codes(error: CarrierAPIError) -> list[str]:
    """The Telnyx error codes in a ``CarrierAPIError`` (``["90018"]``), for callers to branch on."""
    response = error.response
    try:
        return [str(e.get("code")) for e in response.json().get("errors") or []]
    except (ValueError, AttributeError, TypeError):
        return []


class TelnyxCallControl:
    """Commands for Telnyx calls. One instance per job (a webhook, a live call); close it after.

    Use ``async with TelnyxCallControl(account) as rest:`` or call ``aclose()``.
    """

    def __init__(
        self, account: TelnyxAccount, *, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.account = account
        self._client = tls.async_client(
            base_url=account.base_url,
            headers={"Authorization": f"Bearer {account.api_key}", "Accept": "application/json"},
            timeout=account.timeout,
            transport=transport,
        )

    async def __aenter__(self) -> TelnyxCallControl:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def command(
        self,
        call_control_id: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        command_id: str | None = None,
    ) -> dict:
        """Send ``actions/<action>`` for the call; return the response's ``data``.

        ``command_id`` defaults to a fresh uuid; pass a deterministic one where a retry of the
        same intent (a retried webhook) must not act twice.
        """
        body = {k: v for k, v in (params or {}).items() if v is not None}
        body["command_id"] = command_id or str(uuid.uuid4())
        path = f"/calls/{quote(call_control_id, safe='')}/actions/{action}"
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as err:
            raise CarrierAPIError(
                f"Telnyx {action} failed: {err.__class__.__name__}", vendor="telnyx"
            ) from err
        if response.is_error:
            raise CarrierAPIError(
                f"Telnyx {action} refused: {_vendor_message(response)}",
                vendor="telnyx",
                status_code=response.status_code,
                response=response,
            )
        logger.debug("Telnyx %s accepted for %s", action, call_control_id)
        try:
            return response.json().get("data") or {}
        except (ValueError, AttributeError):
            return {}

    # -- the commands we use --------------------------------------------------------------------

    async def answer(
        self,
        call_control_id: str,
        *,
        client_state: str | None = None,
        command_id: str | None = None,
        **params,
    ) -> dict:
        """Answer a parked incoming call."""
        return await self.command(
            call_control_id,
            "answer",
            {"client_state": client_state, **params},
            command_id=command_id,
        )

    async def reject(
        self, call_control_id: str, cause: str = "CALL_REJECTED", *, command_id: str | None = None
    ) -> dict:
        """Refuse a parked incoming call (``CALL_REJECTED``, ``USER_BUSY``, ...)."""
        return await self.command(
            call_control_id, "reject", {"cause": cause}, command_id=command_id
        )

    async def start_streaming(
        self, call_control_id: str, params: dict[str, Any], *, command_id: str | None = None
    ) -> dict:
        """``streaming_start`` with ``params`` (see ``codecs.StreamCodec.streaming_params``)."""
        return await self.command(call_control_id, "streaming_start", params, command_id=command_id)

    async def stop_streaming(
        self, call_control_id: str, stream_id: str | None = None, *, command_id: str | None = None
    ) -> dict:
        """Stop one stream, or every stream on the call without ``stream_id``."""
        return await self.command(
            call_control_id, "streaming_stop", {"stream_id": stream_id}, command_id=command_id
        )

    async def speak(
        self,
        call_control_id: str,
        text: str,
        *,
        voice: str = "female",
        language: str = "en-US",
        client_state: str | None = None,
        command_id: str | None = None,
    ) -> dict:
        """Say ``text`` with Telnyx's text-to-speech; ``call.speak.ended`` follows."""
        params = {
            "payload": text,
            "voice": voice,
            "language": language,
            "client_state": client_state,
        }
        return await self.command(call_control_id, "speak", params, command_id=command_id)

    async def hangup(
        self,
        call_control_id: str,
        *,
        client_state: str | None = None,
        command_id: str | None = None,
    ) -> dict:
        """Hang up; Telnyx then sends ``call.hangup``."""
        return await self.command(
            call_control_id, "hangup", {"client_state": client_state}, command_id=command_id
        )

    async def transfer(
        self,
        call_control_id: str,
        to: str,
        *,
        from_: str | None = None,
        timeout_secs: int | None = None,
        command_id: str | None = None,
        **params,
    ) -> dict:
        """Transfer the call to ``to``: an E.164 number or a SIP URI (``sip:agent@example.com``)."""
        body = {"to": to, "from": from_, "timeout_secs": timeout_secs, **params}
        return await self.command(call_control_id, "transfer", body, command_id=command_id)

    async def start_recording(
        self,
        call_control_id: str,
        *,
        format: str = "mp3",
        channels: str = "dual",
        command_id: str | None = None,
        **params,
    ) -> dict:
        """``record_start``; the file arrives later as a ``call.recording.saved`` webhook."""
        body = {"format": format, "channels": channels, **params}
        return await self.command(call_control_id, "record_start", body, command_id=command_id)

    async def stop_recording(self, call_control_id: str, *, command_id: str | None = None) -> dict:
        return await self.command(call_control_id, "record_stop", {}, command_id=command_id)
