"""The OpenAI Chat Completions reply stage against a fake streaming endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import pytest

from tests.fakes.openai_chat import API_KEY, FakeOpenAIChat
from voiceagents.audio.formats import MULAW_8K
from voiceagents.exceptions import (
    ProviderAPIError,
    ProviderConnectionError,
    ProviderProtocolError,
)
from voiceagents.pipeline.base import StageContext
from voiceagents.pipeline.openai_chat import (
    DEFAULT_INSTRUCTIONS,
    INTERRUPTED_NOTE,
    OpenAIChatReply,
)
from voiceagents.providers.base import StageConfig

PROMPT = "You are the receptionist of Chez Marie. Answer in one short sentence."


@pytest.fixture
def chat():
    with FakeOpenAIChat() as fake:
        yield fake


def make_stage(url: str, *, api_key: str = API_KEY, instructions: str = PROMPT, **context):
    config = StageConfig(
        id="openai_chat",
        api_key=api_key,
        base_url=url,
        model="gpt-4o-mini",
        instructions=instructions,
    )
    return OpenAIChatReply(config, StageContext("CA-test", MULAW_8K, **context))


@contextlib.asynccontextmanager
async def opened(url: str, **kwargs):
    stage = make_stage(url, **kwargs)
    await stage.open()
    try:
        yield stage
    finally:
        await stage.close()


def message(text: str, history=()) -> dict:
    return {"type": "message", "text": text, "history": list(history), "call_id": "CA-test"}


async def collect(stage, event) -> list[str]:
    return [piece async for piece in stage.reply(event)]


async def wait_in_thread(event: threading.Event) -> bool:
    return await asyncio.to_thread(event.wait, 5)


# -- the request --------------------------------------------------------------------------------


async def test_request_carries_key_model_stream_options_and_messages(chat):
    async with opened(chat.url) as stage:
        await collect(stage, message("Can I book a table for tomorrow?"))

    (request,) = chat.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "Can I book a table for tomorrow?"},
    ]


async def test_history_maps_roles_and_marks_an_interrupted_reply(chat):
    history = [
        {"role": "agent", "text": "Chez Marie, good evening!", "interrupted": False},
        {"role": "caller", "text": "Hi, are you open on Sunday?", "interrupted": False},
        # The caller cut in: only these words were heard.
        {"role": "agent", "text": "We are open on Sunday from", "interrupted": True},
        {"role": "caller", "text": "Sorry, I meant Monday.", "interrupted": False},
    ]
    async with opened(chat.url) as stage:
        await collect(stage, message("Is that alright?", history))

    messages = chat.bodies[0]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith(PROMPT)
    assert INTERRUPTED_NOTE in messages[0]["content"]
    assert messages[1:] == [
        {"role": "assistant", "content": "Chez Marie, good evening!"},
        {"role": "user", "content": "Hi, are you open on Sunday?"},
        {"role": "assistant", "content": "We are open on Sunday from —"},
        {"role": "user", "content": "Sorry, I meant Monday."},
        {"role": "user", "content": "Is that alright?"},
    ]


async def test_no_interruption_note_without_an_interrupted_turn(chat):
    history = [{"role": "agent", "text": "Hello!", "interrupted": False}]
    async with opened(chat.url) as stage:
        await collect(stage, message("Hi.", history))
    assert chat.bodies[0]["messages"][0] == {"role": "system", "content": PROMPT}


async def test_an_interrupted_turn_the_caller_heard_nothing_of_is_left_out(chat):
    history = [
        {"role": "caller", "text": "Hello?", "interrupted": False},
        {"role": "agent", "text": "", "interrupted": True},
    ]
    async with opened(chat.url) as stage:
        await collect(stage, message("Anyone there?", history))
    assert [m["role"] for m in chat.bodies[0]["messages"]] == ["system", "user", "user"]


async def test_default_system_prompt_when_the_agent_has_none(chat):
    async with opened(chat.url, instructions="  ") as stage:
        await collect(stage, message("Hello?"))
    system = chat.bodies[0]["messages"][0]
    assert system == {"role": "system", "content": DEFAULT_INSTRUCTIONS}
    assert "phone" in DEFAULT_INSTRUCTIONS and "brief" in DEFAULT_INSTRUCTIONS


async def test_a_key_press_becomes_a_user_message(chat):
    event = {"type": "dtmf", "digit": "5", "text": "", "history": []}
    async with opened(chat.url) as stage:
        await collect(stage, event)
    assert chat.bodies[0]["messages"][-1] == {
        "role": "user",
        "content": "(The caller pressed the key 5.)",
    }


# -- streaming ----------------------------------------------------------------------------------


async def test_pieces_are_yielded_in_order_and_usage_is_kept(chat):
    chat.script("Sure", ", we have a table", " at eight.", " Shall I book it?")
    async with opened(chat.url) as stage:
        pieces = await collect(stage, message("A table for two?"))
        assert pieces == ["Sure", ", we have a table", " at eight.", " Shall I book it?"]
        assert stage.last_usage == {"prompt_tokens": 50, "completion_tokens": 4, "total_tokens": 54}
    assert chat.completed == 1


async def test_first_piece_arrives_while_the_model_is_still_writing(chat):
    gate = threading.Event()
    chat.script("Good evening.", " We open at six.", gate=gate, gate_after=1)
    async with opened(chat.url) as stage:
        pieces = stage.reply(message("When do you open?"))
        first = await asyncio.wait_for(anext(pieces), 5)
        assert first == "Good evening."
        # The fake holds the rest until the gate opens: the first piece did not wait for it.
        assert chat.completed == 0
        gate.set()
        assert [piece async for piece in pieces] == [" We open at six."]
    assert chat.completed == 1


async def test_replies_share_one_kept_alive_connection(chat):
    async with opened(chat.url) as stage:
        await collect(stage, message("One."))
        await collect(stage, message("Two."))
    first, second = chat.requests
    assert first.peer == second.peer


async def test_a_stream_without_done_after_the_finish_is_whole(chat):
    """Some proxies drop the final ``[DONE]``; a finished choice is enough."""

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            b'data: {"choices":[{"index":0,"delta":{"content":"Hi."},"finish_reason":null}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        )
        await writer.drain()
        writer.close()

    async with raw_server(serve) as url, opened(url) as stage:
        assert await collect(stage, message("Hello")) == ["Hi."]


async def test_tool_calls_are_logged_and_ignored(chat, caplog):
    chat.script("Let me check.", tool_calls=[{"name": "check_slots", "arguments": '{"day":"mon"}'}])
    with caplog.at_level(logging.WARNING, logger="voiceagents.pipeline.openai_chat"):
        async with opened(chat.url) as stage:
            assert await collect(stage, message("Free on Monday?")) == ["Let me check."]
    assert "check_slots" in caplog.text
    assert "mon" not in caplog.text  # arguments may hold the caller's data


# -- cancellation (barge-in) -------------------------------------------------------------------


async def test_closing_the_iterator_closes_the_request(chat):
    gate = threading.Event()
    chat.script("Well.", " Let me tell you a long story.", gate=gate)
    async with opened(chat.url) as stage:
        pieces = stage.reply(message("Tell me everything."))
        assert await anext(pieces) == "Well."
        await pieces.aclose()
        assert await wait_in_thread(chat.client_gone)
        gate.set()
    assert chat.completed == 0


async def test_cancelling_the_consumer_closes_the_request(chat):
    gate = threading.Event()
    chat.script("Hmm.", " Still thinking.", gate=gate)
    async with opened(chat.url) as stage:
        received = asyncio.Event()

        async def consume():
            async for _piece in stage.reply(message("Well?")):
                received.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(received.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_in_thread(chat.client_gone)
        gate.set()
    assert chat.completed == 0


async def test_the_stage_still_replies_after_a_barge_in(chat):
    gate = threading.Event()
    chat.script("First.", " Never heard.", gate=gate)
    chat.script("Second reply.")
    async with opened(chat.url) as stage:
        pieces = stage.reply(message("One"))
        await anext(pieces)
        await pieces.aclose()
        gate.set()
        assert await collect(stage, message("Two")) == ["Second reply."]


# -- errors -------------------------------------------------------------------------------------


async def test_a_wrong_key_is_refused_with_openais_message(chat):
    async with opened(chat.url, api_key="sk-wrong-key-000000") as stage:
        with pytest.raises(ProviderAPIError) as excinfo:
            await collect(stage, message("Hello"))
    err = excinfo.value
    assert err.status_code == 401
    assert err.vendor == "openai"
    assert "Incorrect API key provided" in str(err)
    assert "check the API key" in str(err)


@pytest.mark.parametrize(
    "status, text, kind",
    [
        (404, "The model `gpt-9` does not exist or you do not have access to it.", None),
        (429, "You exceeded your current quota, please check your plan.", "insufficient_quota"),
        (400, "Invalid value for 'messages[1].role'.", "invalid_request_error"),
    ],
)
async def test_http_errors_carry_openais_message_and_status(chat, status, text, kind):
    chat.fail_next(status, text, kind=kind or "invalid_request_error")
    async with opened(chat.url) as stage:
        with pytest.raises(ProviderAPIError) as excinfo:
            await collect(stage, message("Hello"))
    assert excinfo.value.status_code == status
    assert text in str(excinfo.value)


async def test_an_error_in_the_stream_stops_the_reply(chat):
    chat.script(
        "Certainly.",
        " And then",
        error={"message": "The server had an error while processing your request."},
        error_after=1,
    )
    received = []
    async with opened(chat.url) as stage:
        with pytest.raises(ProviderAPIError, match="The server had an error"):
            async for piece in stage.reply(message("Hi")):
                received.append(piece)
    assert received == ["Certainly."]


async def test_an_unreachable_service_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        async with opened(f"http://127.0.0.1:{port}/v1/chat/completions") as stage:
            with pytest.raises(ProviderConnectionError):
                await collect(stage, message("Hello"))


async def test_a_dropped_stream_is_a_connection_error(chat):
    chat.script("Sure.", " The rest is lost.", drop_after=1)
    received = []
    async with opened(chat.url) as stage:
        with pytest.raises(ProviderConnectionError):
            async for piece in stage.reply(message("Hi")):
                received.append(piece)
    assert received == ["Sure."]


async def test_a_stream_that_ends_before_the_model_finished_is_a_connection_error():
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            b'data: {"choices":[{"index":0,"delta":{"content":"Half"},"finish_reason":null}]}\n\n'
        )
        await writer.drain()
        writer.close()

    async with raw_server(serve) as url, opened(url) as stage:
        with pytest.raises(ProviderConnectionError, match="before it was complete"):
            await collect(stage, message("Hello"))


async def test_a_stream_event_that_is_not_json_is_a_protocol_error():
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            b"data: <html>gateway</html>\n\n"
        )
        await writer.drain()
        writer.close()

    async with raw_server(serve) as url, opened(url) as stage:
        with pytest.raises(ProviderProtocolError):
            await collect(stage, message("Hello"))


async def test_close_is_idempotent(chat):
    stage = make_stage(chat.url)
    await stage.open()
    await stage.close()
    await stage.close()


@contextlib.asynccontextmanager
async def raw_server(serve):
    """A one-off HTTP server written by hand, for answers the fake does not script."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.close()
        await server.wait_closed()
