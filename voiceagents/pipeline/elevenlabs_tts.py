"""ElevenLabs text-to-speech: a streaming REST request per sentence (docs/stages/elevenlabs_tts.md).

``POST {base}/v1/text-to-speech/{voice_id}/stream?output_format=...`` with ``xi-api-key``
answers a chunked body of raw audio, which ``synthesize`` yields as it arrives. A request per
sentence (rather than ElevenLabs' text-streaming WebSocket) makes a barge-in simple: closing the
iterator closes that one HTTP request, and nothing else has to be resynchronised. One
``httpx.AsyncClient`` per call keeps the TLS connection open from one sentence to the next.

Formats: on a μ-law carrier (Twilio, Telnyx PCMU) we ask for ``ulaw_8000``, which goes to the
carrier untouched; on any other carrier for ``pcm_16000``, which the call converts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from ..audio.formats import MULAW_8K, PCM16_16K
from ..audio.pcm import SampleCarry
from ..exceptions import ProviderAPIError, ProviderConnectionError, UnsupportedFeature
from ..providers.elevenlabs_api import vendor_message
from ..providers.elevenlabs_voices import resolve_voice_id
from ..transport import tls
from .base import TextToSpeech

DEFAULT_API_URL = "https://api.elevenlabs.io"
DEFAULT_MODEL = "eleven_flash_v2_5"
DEFAULT_VOICE = "rachel"

#: ``tts_options`` keys that ElevenLabs reads from the query string, not from the JSON body.
QUERY_OPTIONS = ("enable_logging", "optimize_streaming_latency")


class ElevenLabsTTS(TextToSpeech):
    id = "elevenlabs"
    name = "ElevenLabs"

    def __init__(self, config, context):
        super().__init__(config, context)
        #: The agent's ``tts_model`` option wins over the stage's model.
        self.model: str = context.options.get("tts_model") or config.model or DEFAULT_MODEL
        self.voice_id = ""
        self._client: httpx.AsyncClient | None = None
        self._url = ""
        self._params: dict[str, Any] = {}
        self._body: dict[str, Any] = {}

    async def open(self) -> None:
        """Work out the request (voice id, format, body) and make the HTTP client.

        Nothing is sent yet: the first sentence opens the connection.
        """
        if self._client is not None:
            return
        try:
            self.voice_id = resolve_voice_id(self.config.voice or DEFAULT_VOICE)
        except ValueError as err:
            raise UnsupportedFeature(
                str(err), vendor=self.id, call_id=self.context.call_id
            ) from None
        if self.context.carrier_format == MULAW_8K:
            output_format, self.output_format = "ulaw_8000", MULAW_8K
        else:
            output_format, self.output_format = "pcm_16000", PCM16_16K
        base = (self.config.base_url or DEFAULT_API_URL).rstrip("/")
        self._url = f"{base}/v1/text-to-speech/{quote(self.voice_id, safe='')}/stream"
        self._params, self._body = self._request_parts(output_format)
        self._client = tls.async_client(
            headers={"xi-api-key": self.config.api_key},
            timeout=httpx.Timeout(self.context.http_timeout, connect=self.context.connect_timeout),
        )

    def _request_parts(self, output_format: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The query parameters and the JSON body (without ``text``) of every request."""
        options = dict(self.context.options.get("tts_options") or {})
        # The format follows the carrier (output_format says what the bytes are): not an option.
        options.pop("output_format", None)
        params: dict[str, Any] = {"output_format": output_format}
        for key in QUERY_OPTIONS:
            if key in options:
                params[key] = options.pop(key)
        body: dict[str, Any] = {"model_id": self.model}
        # Only the v2.5 models (flash, turbo) take a language code; others refuse the field.
        language = (self.config.language or "").split("-")[0].lower()
        if language and self.model.endswith("_v2_5"):
            body["language_code"] = language
        body.update(options)
        return params, body

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """The audio of ``text`` as ElevenLabs streams it; closing early cancels the request."""
        if self._client is None:
            raise ProviderConnectionError(
                "ElevenLabs text-to-speech is not open",
                vendor=self.id,
                call_id=self.context.call_id,
            )
        if not text.strip():
            return  # nothing to say: no request (ElevenLabs would refuse an empty text anyway)
        request = self._client.build_request(
            "POST", self._url, params=self._params, json={**self._body, "text": text}
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as err:
            raise ProviderConnectionError(
                f"cannot reach ElevenLabs text-to-speech: {err}",
                vendor=self.id,
                call_id=self.context.call_id,
            ) from err
        # Closing the response before its end (a barge-in: aclose() or cancellation lands on a
        # yield or a read below) closes the connection, so ElevenLabs stops generating.
        try:
            if response.status_code != 200:
                raise await self._refusal(response)
            carry = SampleCarry(self.output_format.frame_width)
            async for chunk in response.aiter_bytes():
                # A PCM16 sample may straddle two network reads: hold its first byte back.
                whole = carry.feed(chunk)
                if whole:
                    yield whole if isinstance(whole, bytes) else bytes(whole)
        except httpx.HTTPError as err:
            raise ProviderConnectionError(
                f"ElevenLabs text-to-speech dropped: {err}",
                vendor=self.id,
                call_id=self.context.call_id,
            ) from err
        finally:
            await response.aclose()

    async def _refusal(self, response: httpx.Response) -> ProviderAPIError:
        await response.aread()
        hint = " (check the API key)" if response.status_code in (401, 403) else ""
        return ProviderAPIError(
            f"ElevenLabs refused to synthesize speech: {vendor_message(response)}{hint}",
            vendor=self.id,
            call_id=self.context.call_id,
            status_code=response.status_code,
            response=response.text,
            request_id=response.headers.get("request-id"),
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing must never fail a call's teardown
                pass
