"""Registered reply handlers of every shape, adapted to the reply stage's stream of pieces."""

from __future__ import annotations

import asyncio
import threading

import pytest

import voiceagents
from voiceagents.audio.formats import PCM16_16K
from voiceagents.exceptions import UnknownReplyHandler
from voiceagents.pipeline.base import StageContext
from voiceagents.pipeline.handlers import HandlerReply
from voiceagents.providers.base import StageConfig

EVENT = {
    "type": "message",
    "text": "Do you deliver?",
    "call_id": "CA-handlers",
    "caller": "+15550001111",
    "callee": "+15550002222",
    "agent": "Pizzeria",
    "history": [],
    "language": "en-US",
}

#: Handlers record what they saw here (thread ids, closes); cleared by the fixture.
seen: dict[str, object] = {}


@pytest.fixture(autouse=True)
def clear_seen():
    seen.clear()


@voiceagents.reply_handler("pipeline-test-sync")
def sync_handler(event):
    seen["thread"] = threading.get_ident()
    return f"Yes, we deliver. You asked: {event['text']}"


@voiceagents.reply_handler("pipeline-test-async")
async def handle_message(event):
    return f"I heard you say: {event['text']}"


@voiceagents.reply_handler("pipeline-test-async-gen")
async def async_gen_handler(event):
    try:
        yield "Let me see. "
        await asyncio.sleep(0)
        yield "Yes, "
        yield ""  # empty pieces are skipped
        yield "within five miles."
    finally:
        seen["async_closed"] = True


@voiceagents.reply_handler("pipeline-test-sync-gen")
def sync_gen_handler(event):
    try:
        for word in ("One, ", "two, ", "three."):
            seen.setdefault("threads", []).append(threading.get_ident())
            yield word
    finally:
        seen["sync_closed"] = True


@voiceagents.reply_handler("pipeline-test-none")
def silent_handler(event):
    return None


@voiceagents.reply_handler("pipeline-test-list")
def list_handler(event):
    return ["First sentence. ", "Second sentence."]


@voiceagents.reply_handler("pipeline-test-bad")
def bad_handler(event):
    return 42


@voiceagents.reply_handler("pipeline-test-bad-piece")
async def bad_piece_handler(event):
    yield "Fine, "
    yield b"bytes"


@voiceagents.reply_handler("pipeline-test-raises")
async def raising_handler(event):
    raise RuntimeError("the booking system is down")


@voiceagents.reply_handler("pipeline-test-dtmf")
def dtmf_handler(event):
    if event["type"] == "dtmf":
        return f"You pressed {event['digit']}."
    return "Say something."


class Receptionist:
    """A callable object with an async ``__call__``: runs on the loop like a coroutine function."""

    async def __call__(self, event):
        seen["thread"] = threading.get_ident()
        return "Object reply."


voiceagents.reply_handler("pipeline-test-object")(Receptionist())


def stage(name: str) -> HandlerReply:
    config = StageConfig(id="", handler=name)
    return HandlerReply(config, StageContext("CA-handlers", PCM16_16K))


async def pieces(name: str, event=EVENT) -> list[str]:
    return [piece async for piece in stage(name).reply(event)]


async def test_sync_function_returning_a_string():
    assert await pieces("pipeline-test-sync") == ["Yes, we deliver. You asked: Do you deliver?"]


async def test_async_function_returning_a_string():
    assert await pieces("pipeline-test-async") == ["I heard you say: Do you deliver?"]


async def test_async_generator_yields_each_piece():
    assert await pieces("pipeline-test-async-gen") == [
        "Let me see. ",
        "Yes, ",
        "within five miles.",
    ]
    assert seen["async_closed"] is True


async def test_sync_generator_yields_each_piece_from_a_worker_thread():
    assert await pieces("pipeline-test-sync-gen") == ["One, ", "two, ", "three."]
    assert threading.get_ident() not in seen["threads"]


async def test_none_says_nothing():
    assert await pieces("pipeline-test-none") == []


async def test_a_list_of_strings():
    assert await pieces("pipeline-test-list") == ["First sentence. ", "Second sentence."]


async def test_a_callable_object_with_async_call_runs_on_the_loop():
    assert await pieces("pipeline-test-object") == ["Object reply."]
    assert seen["thread"] == threading.get_ident()


async def test_key_presses_reach_the_handler():
    event = {**EVENT, "type": "dtmf", "digit": "5", "text": ""}
    assert await pieces("pipeline-test-dtmf", event) == ["You pressed 5."]


async def test_a_bad_return_value_is_a_type_error_naming_the_handler():
    with pytest.raises(TypeError, match="'pipeline-test-bad' returned int"):
        await pieces("pipeline-test-bad")


async def test_a_bad_piece_is_a_type_error_naming_the_handler():
    with pytest.raises(TypeError, match="'pipeline-test-bad-piece' produced a bytes piece"):
        await pieces("pipeline-test-bad-piece")


async def test_handler_exceptions_propagate_unchanged():
    with pytest.raises(RuntimeError, match="booking system is down"):
        await pieces("pipeline-test-raises")


def test_an_unknown_handler_fails_when_the_stage_is_built():
    with pytest.raises(UnknownReplyHandler, match="pipeline-test-missing"):
        stage("pipeline-test-missing")


# -- sync code stays off the event loop ---------------------------------------------------------


async def test_a_sync_handler_runs_off_the_event_loop_thread():
    await pieces("pipeline-test-sync")
    assert seen["thread"] != threading.get_ident()


@voiceagents.reply_handler("pipeline-test-blocking")
def blocking_handler(event):
    # Blocks until the event loop sets the flag: on the loop's own thread this would deadlock
    # (and time out into the other answer).
    released = event["release"].wait(5)
    return "released" if released else "blocked the loop"


async def test_a_blocking_sync_handler_does_not_block_the_loop():
    release = threading.Event()
    task = asyncio.create_task(pieces("pipeline-test-blocking", {**EVENT, "release": release}))
    await asyncio.sleep(0)
    release.set()  # only runs if the handler left the loop free
    assert await asyncio.wait_for(task, 10) == ["released"]


@voiceagents.reply_handler("pipeline-test-orm")
def orm_handler(event):
    from voiceagents.models import Agent

    return f"{Agent.objects.count()} agents."


@pytest.mark.django_db(transaction=True)
async def test_a_sync_handler_may_use_the_orm():
    # Called on the loop's thread, Django would raise SynchronousOnlyOperation.
    assert await pieces("pipeline-test-orm") == ["0 agents."]


# -- stopping early (a barge-in) ----------------------------------------------------------------


async def test_closing_early_closes_an_async_generator_handler():
    stream = stage("pipeline-test-async-gen").reply(EVENT)
    assert await anext(stream) == "Let me see. "
    await stream.aclose()
    assert seen["async_closed"] is True


async def test_closing_early_closes_a_sync_generator_handler():
    stream = stage("pipeline-test-sync-gen").reply(EVENT)
    assert await anext(stream) == "One, "
    await stream.aclose()
    assert seen["sync_closed"] is True
    assert len(seen["threads"]) == 1
