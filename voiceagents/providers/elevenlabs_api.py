"""A small client of the ElevenLabs REST API: what a phone bridge needs and nothing more.

Every request carries ``xi-api-key``. Errors come back as ``ProviderAPIError`` carrying the
vendor's own message (``detail.message``, or the first 422 validation message), so that the
admin and the logs can show it as ElevenLabs said it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urljoin

import httpx

from ..exceptions import ProviderAPIError
from ..transport import tls

DEFAULT_API_URL = "https://api.elevenlabs.io"
VENDOR = "elevenlabs"


def vendor_message(response: httpx.Response) -> str:
    """The human part of an ElevenLabs error body, else the body itself (shortened)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("status") or detail)
    if isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {"msg": detail[0]}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
    if isinstance(detail, str):
        return detail
    return str(body)[:300]


class ElevenLabsAPI:
    """``base_url`` is the API root (``https://api.elevenlabs.io``, or a test fake's)."""

    def __init__(self, api_key: str, base_url: str = "", *, timeout: float = 10.0):
        self.api_key = api_key
        self.base_url = (base_url or DEFAULT_API_URL).rstrip("/") + "/"
        self.timeout = timeout

    def _url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    @property
    def _headers(self) -> dict[str, str]:
        return {"xi-api-key": self.api_key, "Accept": "application/json"}

    def _error(self, what: str, response: httpx.Response, **context) -> ProviderAPIError:
        hint = " (check the API key)" if response.status_code in (401, 403) else ""
        return ProviderAPIError(
            f"ElevenLabs refused to {what}: {vendor_message(response)}{hint}",
            vendor=VENDOR,
            status_code=response.status_code,
            response=response.text,
            **context,
        )

    # -- per call (async: runs on the call's event loop) -----------------------------------------

    async def signed_url(self, agent_id: str, *, call_id: str | None = None) -> str:
        """A single-use ``wss://`` URL of a conversation with ``agent_id`` (private agents)."""
        try:
            async with tls.async_client(timeout=self.timeout) as client:
                response = await client.get(
                    self._url("/v1/convai/conversation/get-signed-url"),
                    params={"agent_id": agent_id},
                    headers=self._headers,
                )
        except httpx.HTTPError as err:
            raise ProviderAPIError(
                f"cannot reach ElevenLabs for a signed URL: {err}", vendor=VENDOR, call_id=call_id
            ) from err
        if response.status_code != 200:
            raise self._error("sign a conversation URL", response, call_id=call_id)
        url = _json(response).get("signed_url")
        if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
            raise ProviderAPIError(
                "ElevenLabs answered without a signed_url",
                vendor=VENDOR,
                call_id=call_id,
                response=response.text,
            )
        return url

    # -- provisioning and after the call (sync: admin, Celery tasks, call setup's thread) ------

    def create_agent(self, body: dict[str, Any]) -> str:
        """Create an agent from ``body`` (name, conversation_config, platform_settings); its id."""
        response = self._request("POST", "/v1/convai/agents/create", "create the agent", json=body)
        agent_id = _json(response).get("agent_id")
        if not isinstance(agent_id, str) or not agent_id:
            raise ProviderAPIError(
                "ElevenLabs created an agent but answered without its agent_id",
                vendor=VENDOR,
                response=response.text,
            )
        return agent_id

    def update_agent(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH ``body`` into the agent (ElevenLabs deep-merges it); the full agent."""
        path = f"/v1/convai/agents/{quote(agent_id, safe='')}"
        return _json(self._request("PATCH", path, "update the agent", json=body))

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        path = f"/v1/convai/agents/{quote(agent_id, safe='')}"
        return _json(self._request("GET", path, "read the agent"))

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        """A finished conversation's transcript and analysis."""
        path = f"/v1/convai/conversations/{quote(conversation_id, safe='')}"
        return _json(self._request("GET", path, "return the conversation"))

    def list_voices(self) -> list[dict[str, Any]]:
        """The account's voices (``voice_id``, ``name``, ``category``...)."""
        voices = _json(self._request("GET", "/v1/voices", "list the voices")).get("voices")
        return [voice for voice in voices or () if isinstance(voice, dict)]

    def _request(self, method: str, path: str, what: str, **kwargs) -> httpx.Response:
        try:
            with tls.client(timeout=self.timeout) as client:
                response = client.request(method, self._url(path), headers=self._headers, **kwargs)
        except httpx.HTTPError as err:
            raise ProviderAPIError(
                f"cannot reach ElevenLabs to {what}: {err}", vendor=VENDOR
            ) from err
        if not 200 <= response.status_code < 300:
            raise self._error(what, response)
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
