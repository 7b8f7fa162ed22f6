"""OpenAI text-to-speech (``POST /v1/audio/speech``): one streamed HTTP request per text.

We always ask for ``response_format: "pcm"``: raw PCM16 little-endian, 24 kHz, mono, no header,
and the lowest-latency format OpenAI offers. OpenAI has no telephony formats, so the call
converts 24 kHz to the carrier's format with the audio core. The body is chunked and read as it
arrives; chunk boundaries need not fall between samples, so an odd trailing byte is kept for the
next chunk. See docs/stages/openai_tts.md.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx

from ..audio.formats import PCM16_24K
from ..audio.pcm import SampleCarry
from ..exceptions import ProviderConnectionError
from ..transport import tls
from .base import TextToSpeech
from .openai_rest import VENDOR, api_error, auth_headers

DEFAULT_URL = "https://api.openai.com/v1/audio/speech"
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
#: OpenAI refuses a longer ``input``.
MAX_INPUT_CHARS = 4096

# A sentence ends at . ! ? … (or ; :) followed by white space.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…;:])\s+")


class OpenAITTS(TextToSpeech):
    id = "openai_tts"
    name = "OpenAI TTS"

    def __init__(self, config, context):
        super().__init__(config, context)
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def open(self) -> None:
        self.output_format = PCM16_24K
        if self._client is None:
            # One client per call: its connection pool is reused by every sentence of the call.
            self._client = tls.async_client(
                timeout=httpx.Timeout(
                    self.context.http_timeout, connect=self.context.connect_timeout
                )
            )

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - close() never raises
                pass

    def request_body(self, text: str) -> dict:
        """The JSON body for ``text``: ``tts_options`` (``instructions``, ``speed``...) are
        merged in, but ``input`` and ``response_format`` stay ours."""
        options = self.context.options
        body = {
            "model": options.get("tts_model") or self.config.model or DEFAULT_MODEL,
            "voice": self.config.voice or DEFAULT_VOICE,
        }
        body.update(options.get("tts_options") or {})
        body["input"] = text
        body["response_format"] = "pcm"
        return body

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 24 kHz for ``text``, chunk by chunk; a text longer than OpenAI's limit is
        spoken as several requests, one after the other."""
        if self._closed:
            raise ProviderConnectionError(
                f"{self.name} is closed", vendor=VENDOR, call_id=self.context.call_id
            )
        if self._client is None:
            await self.open()
        for piece in split_input(text):
            async for chunk in self._speak(piece):
                yield chunk

    async def _speak(self, text: str) -> AsyncIterator[bytes]:
        carry = SampleCarry(2)
        url = self.config.base_url or DEFAULT_URL
        headers = auth_headers(self.config.api_key)
        call_id = self.context.call_id
        try:
            # Leaving this block for any reason (the end, an error, aclose() or a cancelled
            # task at the yield) closes the response; unread, its connection is dropped, which
            # is how OpenAI learns that a barge-in cancelled the speech.
            async with self._client.stream(
                "POST", url, headers=headers, json=self.request_body(text)
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise api_error(self.name, response, call_id=call_id)
                async for data in response.aiter_bytes():
                    whole = carry.feed(data)
                    if whole:
                        yield bytes(whole)
        except httpx.HTTPError as err:
            raise ProviderConnectionError(
                f"{self.name} request failed: {err}", vendor=VENDOR, call_id=call_id
            ) from err


def split_input(text: str, limit: int = MAX_INPUT_CHARS) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut between sentences where it can,
    else between words, else (a single huge "word") anywhere. Blank text gives no piece."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    units: list[str] = []
    for sentence in _SENTENCE_BREAK.split(text):
        if len(sentence) <= limit:
            units.append(sentence)
            continue
        for word in sentence.split():
            units.extend(word[i : i + limit] for i in range(0, len(word), limit))
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + 1 + len(unit) > limit:
            pieces.append(current)
            current = unit
        else:
            current = f"{current} {unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces
