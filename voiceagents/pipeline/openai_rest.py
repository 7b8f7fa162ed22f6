"""What the OpenAI REST stages share (``openai_tts``, ``whisper``): auth and OpenAI's errors.

OpenAI answers every refused request with ``{"error": {"message", "type", "param", "code"}}``;
the message is what a person needs to read (``Incorrect API key provided: ...``), so errors
carry it verbatim, with the HTTP status.
"""

from __future__ import annotations

import httpx

from ..exceptions import ProviderAPIError

VENDOR = "openai"


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def error_message(response: httpx.Response) -> str:
    """``error.message`` of an OpenAI error body, else the body itself (shortened).

    The body must have been read (``await response.aread()`` for a streamed response).
    """
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    return str(body)[:300]


def api_error(name: str, response: httpx.Response, *, call_id: str | None) -> ProviderAPIError:
    """``ProviderAPIError`` for a refused request to the stage called ``name``."""
    return ProviderAPIError(
        f"{name} refused the request: {error_message(response)}",
        vendor=VENDOR,
        call_id=call_id,
        status_code=response.status_code,
        response=response.text,
    )
