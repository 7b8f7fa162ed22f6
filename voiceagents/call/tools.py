"""Running the tools a model calls during a call: the built-in ones and the agent's registered
tools (``voiceagents.tools``, docs/tools.md).

Every call gets an answer, so the model is never left waiting: an unknown tool, arguments that
are not a JSON object, or a transfer the agent may not make all come back as error results,
which the model reads and talks around. Each call is on the call's timeline.

- ``end_call``: answered, then the call ends (``end_reason`` ``agent_hangup``) once the agent's
  goodbye has played (a silent agent gets ``GOODBYE_START_S`` to start it), or after
  ``END_CALL_GRACE_S`` at most.
- ``transfer_call``: only to a number on the agent's transfer allowlist; any other number is
  refused (an error result, logged, on the timeline) without a request to the carrier. An allowed
  one is carried out on the carrier (``transfer``: the agent's last words play first); the model
  is answered once the carrier has answered: success, after which our side of the call ends
  (``end_reason`` ``transferred``), or the carrier's refusal as an error, and the call goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from ..conf import get_setting
from ..exceptions import VoiceAgentsError
from ..providers.base import ToolCall
from ..tools import get_tool
from . import transfer

if TYPE_CHECKING:
    from .session import CallSession

#: Longest wait, after ``end_call``, for the agent's last words to play before hanging up.
END_CALL_GRACE_S = 10.0
#: Time a silent agent gets after an ``end_call`` result to start its goodbye (the pipeline
#: writes and synthesizes it first: an LLM and a TTS round trip).
GOODBYE_START_S = 3.0

_NUMBER_PUNCTUATION = re.compile(r"[\s().-]")


def normalise_number(text: str) -> str:
    """A phone number as written by a model or a person, without spaces, dots, dashes and
    parentheses (``+1 (415) 555-0123`` → ``+14155550123``); not otherwise checked."""
    return _NUMBER_PUNCTUATION.sub("", text)


async def run_tool(session: CallSession, call: ToolCall) -> None:
    """Run ``call`` for ``session`` and answer the provider."""
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        session.record_event(
            "tool_call", name=call.name, call_id=call.call_id, error="bad_arguments"
        )
        await _answer(session, call, "The arguments must be a JSON object.", error=True)
        return
    handler = _BUILTIN.get(call.name)
    if handler is None and call.name in session.ctx.tools:
        await _run_registered(session, call, arguments)
        return
    if handler is None:
        session.log.warning("the model called an unknown tool %r", call.name)
        session.record_event(
            "tool_call", name=call.name, call_id=call.call_id, error="unknown_tool"
        )
        await _answer(session, call, f"There is no tool named {call.name!r}.", error=True)
        return
    await handler(session, call, arguments)


async def _answer(session: CallSession, call: ToolCall, output: str, *, error: bool = False):
    try:
        await session.provider.tool_result(call.call_id, output, is_error=error)
    except VoiceAgentsError as err:
        session.log.warning("cannot answer the tool call %s: %s", call.name, err)


async def _end_call(session: CallSession, call: ToolCall, arguments: dict) -> None:
    reason = str(arguments.get("reason") or "")[:200]
    session.record_event("tool_call", name=call.name, call_id=call.call_id, reason=reason)
    session.log.info("the agent ends the call%s", f" ({reason})" if reason else "")
    await _answer(session, call, "The call will end after your last words.")
    await session.end_after_playout(
        "agent_hangup", grace_s=END_CALL_GRACE_S, goodbye_start_s=GOODBYE_START_S
    )


async def _transfer_call(session: CallSession, call: ToolCall, arguments: dict) -> None:
    number = normalise_number(str(arguments.get("number") or ""))
    allowed = number in session.ctx.transfer_allowlist
    if not allowed:
        session.record_event(
            "transfer", number=number, call_id=call.call_id, allowed=False, done=False
        )
        session.log.warning("transfer to %r refused: not on the agent's allowlist", number)
        await _answer(
            session,
            call,
            f"Transfer refused: {number or 'no number'} is not a number this line may transfer "
            "to. Tell the caller you cannot transfer them there.",
            error=True,
        )
        return
    session.log.info("the agent transfers the call to %s", number)
    refusal = await transfer.carry_out(
        session, number, by="agent", call_id=call.call_id, allowed=True
    )
    if refusal is not None:
        await _answer(
            session,
            call,
            f"The transfer to {number} did not go through ({refusal}). You are still on the "
            "line with the caller: tell them, and offer to help another way.",
            error=True,
        )
        return
    await _answer(session, call, f"The call is now transferred to {number}.")
    await transfer.end_transferred(session)


_BUILTIN = {"end_call": _end_call, "transfer_call": _transfer_call}


# -- tools of your own ---------------------------------------------------------------------------

#: The longest result text the model is given (a tool that returns a whole table is cut).
MAX_RESULT_CHARS = 4000


async def _run_registered(session: CallSession, call: ToolCall, arguments: dict) -> None:
    """Run a registered tool: its arguments checked against its schema, in a worker thread if it
    is synchronous (it may use the ORM), at most its timeout; every failure is an error result."""
    started = session.loop.time()
    try:
        registered = get_tool(call.name)
    except VoiceAgentsError as err:
        session.log.error("the tool %s cannot be loaded: %s", call.name, err)
        await _finish(session, call, started, "unavailable", "This tool is not available.")
        return
    problem = argument_problem(registered.spec.parameters, arguments)
    if problem:
        await _finish(session, call, started, "bad_arguments", f"Invalid arguments: {problem}")
        return
    kwargs = dict(arguments)
    if registered.wants_call:
        kwargs["call"] = session.ctx.tool_context
    timeout = registered.timeout or float(get_setting("TOOL_TIMEOUT", cast=float))
    func = registered.func
    try:
        if inspect.iscoroutinefunction(func):
            result = await asyncio.wait_for(func(**kwargs), timeout)
        else:
            # A thread of its own (not the database thread the call's writes use); a timed-out
            # synchronous tool cannot be stopped, only no longer waited for.
            result = await asyncio.wait_for(
                sync_to_async(func, thread_sensitive=False)(**kwargs), timeout
            )
    except TimeoutError:
        session.log.warning("the tool %s took more than %g s", call.name, timeout)
        await _finish(
            session, call, started, "timeout", f"The tool did not answer within {timeout:g} s."
        )
        return
    except Exception as err:  # noqa: BLE001 - a tool's failure is the model's to talk around
        session.log.exception("the tool %s failed", call.name)
        await _finish(session, call, started, "failed", f"The tool failed: {type(err).__name__}.")
        return
    await _finish(session, call, started, None, _result_text(result))


async def _finish(session, call: ToolCall, started: float, error: str | None, output: str):
    session.record_event(
        "tool_call",
        name=call.name,
        call_id=call.call_id,
        error=error,
        ms=round((session.loop.time() - started) * 1000, 1),
    )
    await _answer(session, call, output, error=error is not None)


def _result_text(result: Any) -> str:
    if result is None:
        text = "Done."
    elif isinstance(result, str):
        text = result
    else:
        text = json.dumps(result, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " …(cut)"


_SCHEMA_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def argument_problem(schema: dict, arguments: dict) -> str:
    """What is wrong with ``arguments`` for the object ``schema`` ('' if nothing): required
    properties, unknown ones, and the JSON types of the top-level values."""
    properties = schema.get("properties") or {}
    missing = [name for name in schema.get("required") or () if name not in arguments]
    if missing:
        return f"missing {', '.join(missing)}"
    if properties and schema.get("additionalProperties") is not True:
        unknown = [name for name in arguments if name not in properties]
        if unknown:
            return f"unknown {', '.join(unknown)}"
    for name, value in arguments.items():
        expected = _SCHEMA_TYPES.get((properties.get(name) or {}).get("type"))
        if expected is None:
            continue
        if isinstance(value, bool) and expected is not bool:
            return f"{name} must be {properties[name]['type']}"
        if not isinstance(value, expected):
            return f"{name} must be {properties[name]['type']}"
    return ""
