"""The LLM reply stage: OpenAI Chat Completions, streamed (docs/stages/openai_chat.md).

Each caller turn is one ``POST`` of the whole conversation (the admin's prompt as the system
message, the call's history, the new caller text) with ``"stream": true``; the answer comes back
as Server-Sent Events whose ``delta.content`` pieces are yielded as they arrive, so the pipeline
can speak the first sentence while the model is still writing the rest. Closing the iterator
early (a barge-in) closes the HTTP response, which stops the generation on OpenAI's side.

One ``httpx.AsyncClient`` lives for the call (``open``/``close``): its kept-alive connection saves
a TLS handshake on every turn after the first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx

from ..exceptions import ProviderAPIError, ProviderConnectionError, ProviderProtocolError
from ..transport import tls
from .base import ReplyGenerator

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://api.openai.com/v1/chat/completions"
DEFAULT_MODEL = "gpt-4o-mini"
VENDOR = "openai"
#: Requests one reply may make because the model called tools (then it ends, said or not).
MAX_TOOL_ROUNDS = 4

#: The system prompt when the agent has none: it speaks on a phone, so keep it short and plain.
DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice agent answering a phone call. Everything you write is read aloud "
    "to the caller, so answer briefly, in one to three short spoken sentences, in the caller's "
    "language, with no lists, markdown, emoji or links."
)
#: Appended to the system prompt when the history holds a reply the caller cut off.
INTERRUPTED_NOTE = (
    'Your earlier replies that end with " —" were cut off: the caller interrupted you there '
    "and heard only the words shown, not the rest of what you meant to say."
)
#: Marks the end of an interrupted agent turn (what the caller heard, then this).
INTERRUPTED_MARK = " —"


def dtmf_message(digit: str) -> str:
    return f"(The caller pressed the key {digit}.)"


class OpenAIChatReply(ReplyGenerator):
    id = "openai_chat"
    name = "OpenAI Chat Completions"

    def __init__(self, config, context):
        super().__init__(config, context)
        self._client: httpx.AsyncClient | None = None
        #: The ``usage`` object of the last completed reply (tokens), if OpenAI sent one.
        self.last_usage: dict[str, Any] | None = None

    async def open(self) -> None:
        if self._client is None:
            timeout = httpx.Timeout(self.context.http_timeout, connect=self.context.connect_timeout)
            self._client = tls.async_client(timeout=timeout)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # closing must never raise; the call is ending anyway
                logger.debug("closing the OpenAI chat client failed", exc_info=True)

    # -- the request ------------------------------------------------------------------------------

    def messages(self, event: Mapping[str, Any]) -> list[dict[str, str]]:
        """The Chat Completions ``messages`` for ``event``: system prompt, history, caller text."""
        turns, interrupted = _history_messages(event.get("history") or ())
        system = (self.config.instructions or "").strip() or DEFAULT_INSTRUCTIONS
        if interrupted:
            system = f"{system}\n\n{INTERRUPTED_NOTE}"
        if event.get("type") == "dtmf":
            current = dtmf_message(str(event.get("digit", "")))
        else:
            current = str(event.get("text") or "")
        return [
            {"role": "system", "content": system},
            *turns,
            {"role": "user", "content": current},
        ]

    def request_body(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return self._body(self.messages(event))

    def _body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model or DEFAULT_MODEL,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": messages,
        }
        if self.tools and self.run_tool is not None:
            # Chat Completions nests each function (Realtime's tools are flat).
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in self.tools
            ]
            body["tool_choice"] = "auto"
        return body

    # -- the reply ----------------------------------------------------------------------------------

    def reply(self, event: Mapping[str, Any]) -> AsyncIterator[str]:
        return self._converse(self.messages(event))

    async def _converse(self, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        """The reply's text; when the model calls tools, each is run and the model asked again
        with their results (``MAX_TOOL_ROUNDS`` times at most), its text spoken as it comes."""
        usage: dict[str, int] = {}
        offered = bool(self.tools) and self.run_tool is not None
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            calls: dict[int, dict[str, str]] | None = {} if offered else None
            said: list[str] = []
            self.last_usage = None
            async for piece in self._stream(self._body(messages), calls):
                said.append(piece)
                yield piece
            for key, value in (self.last_usage or {}).items():
                if isinstance(value, int):
                    usage[key] = usage.get(key, 0) + value
            self.last_usage = usage or None
            if not calls:
                return
            if round_ == MAX_TOOL_ROUNDS:
                logger.warning(
                    "call %s: the model still calls tools after %d rounds; its reply ends",
                    self.context.call_id,
                    MAX_TOOL_ROUNDS,
                )
                return
            ordered = [calls[index] for index in sorted(calls)]
            messages = [
                *messages,
                {
                    "role": "assistant",
                    "content": "".join(said) or None,
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]},
                        }
                        for call in ordered
                    ],
                },
            ]
            for call in ordered:
                output = await self.run_tool(call["id"], call["name"], call["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})

    async def _stream(
        self, body: dict[str, Any], calls: dict[int, dict[str, str]] | None = None
    ) -> AsyncIterator[str]:
        if self._client is None:
            await self.open()
        url = self.config.base_url or DEFAULT_URL
        headers = {
            "Authorization": f"Bearer {self.config.api_key}",
            "Accept": "text/event-stream",
        }
        call_id = self.context.call_id
        finish_reason = None
        done = False
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    await response.aread()
                    raise self._refused(response)
                async for payload in _sse_data(response.aiter_lines()):
                    # After [DONE] the body ends at once; reading to its end (rather than
                    # leaving) keeps the connection alive for the next turn.
                    if done:
                        continue
                    if payload == "[DONE]":
                        done = True
                        continue
                    chunk = _parse(payload, call_id)
                    if "error" in chunk:
                        raise ProviderAPIError(
                            f"OpenAI stopped the reply: {_error_message(chunk)}",
                            vendor=VENDOR,
                            call_id=call_id,
                            response=payload,
                        )
                    if chunk.get("usage"):
                        self.last_usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            yield content
                        if delta.get("tool_calls"):
                            _collect_tool_calls(delta["tool_calls"], calls, call_id)
                        finish_reason = choice.get("finish_reason") or finish_reason
        except httpx.TimeoutException as err:
            raise ProviderConnectionError(
                f"OpenAI did not answer within {self.context.http_timeout:g} s",
                vendor=VENDOR,
                call_id=call_id,
            ) from err
        except httpx.HTTPError as err:
            raise ProviderConnectionError(
                f"cannot reach OpenAI for a reply: {err}", vendor=VENDOR, call_id=call_id
            ) from err
        if not done and finish_reason is None:
            # The body ended cleanly but before the model finished: as good as a drop.
            raise ProviderConnectionError(
                "OpenAI ended the reply stream before it was complete",
                vendor=VENDOR,
                call_id=call_id,
            )
        if finish_reason not in (None, "stop", "tool_calls"):
            logger.info("OpenAI reply of call %s finished with %r", call_id, finish_reason)

    def _refused(self, response: httpx.Response) -> ProviderAPIError:
        hint = " (check the API key)" if response.status_code in (401, 403) else ""
        try:
            message = _error_message(response.json())
        except ValueError:
            message = response.text[:300] or f"HTTP {response.status_code}"
        return ProviderAPIError(
            f"OpenAI refused the reply request: {message}{hint}",
            vendor=VENDOR,
            call_id=self.context.call_id,
            status_code=response.status_code,
            response=response.text,
        )


def _history_messages(
    history: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, str]], bool]:
    """Caller turns as ``user``, agent turns as ``assistant`` (an interrupted one is what the
    caller heard plus ``INTERRUPTED_MARK``), and whether any turn was interrupted."""
    messages = []
    interrupted = False
    for turn in history:
        text = str(turn.get("text") or "").strip()
        if not text:
            continue  # e.g. an agent turn cut off before the caller heard a word: nothing said
        role = turn.get("role")
        if role == "caller":
            messages.append({"role": "user", "content": text})
        elif role == "agent":
            if turn.get("interrupted"):
                interrupted = True
                text += INTERRUPTED_MARK
            messages.append({"role": "assistant", "content": text})
    return messages, interrupted


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event (its ``data:`` lines joined by newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        # Comments (":") and other fields (event:, id:, retry:) carry nothing we use.
    if data:
        yield "\n".join(data)


def _parse(payload: str, call_id: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except ValueError as err:
        raise ProviderProtocolError(
            "OpenAI sent a stream event that is not JSON",
            vendor=VENDOR,
            call_id=call_id,
            response=payload,
        ) from err
    if not isinstance(chunk, dict):
        raise ProviderProtocolError(
            "OpenAI sent a stream event that is not an object",
            vendor=VENDOR,
            call_id=call_id,
            response=payload,
        )
    return chunk


def _error_message(body: Any) -> str:
    """OpenAI's ``error.message`` (the whole body, shortened, when it has none)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    return str(body)[:300]


def _collect_tool_calls(deltas: Any, calls: dict[int, dict[str, str]] | None, call_id: str) -> None:
    """Tool-call fragments by ``index``: the first carries the id and name, the others pieces of
    the arguments (joined, parsed by the tool's runner once the model has finished)."""
    for delta in deltas if isinstance(deltas, list) else ():
        if not isinstance(delta, dict):
            continue
        function = delta.get("function") or {}
        if calls is None:
            # No tools were offered, so the model should call none: say so, once per call.
            if function.get("name"):
                logger.warning(
                    "OpenAI asked for tool %r in call %s, but none was offered; ignored",
                    function["name"],
                    call_id,
                )
            continue
        entry = calls.setdefault(
            int(delta.get("index") or 0), {"id": "", "name": "", "arguments": ""}
        )
        entry["id"] = delta.get("id") or entry["id"]
        entry["name"] = function.get("name") or entry["name"]
        entry["arguments"] += function.get("arguments") or ""
