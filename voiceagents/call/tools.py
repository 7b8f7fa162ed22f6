"""Running the tools a model calls during a call (the built-in ones of ``voiceagents.tools``).

Every call gets an answer, so the model is never left waiting: an unknown tool, arguments that
are not a JSON object, or a transfer the agent may not make all come back as error results,
which the model reads and talks around. Each call is on the call's timeline.

- ``end_call``: answered, then the call ends (``end_reason`` ``agent_hangup``) once the agent's
  goodbye has played, or after ``END_CALL_GRACE_S`` at most.
- ``transfer_call``: only to a number on the agent's transfer allowlist; any other number is
  refused (an error result, logged, on the timeline) without a request to the carrier. An allowed
  one is carried out on the carrier (``transfer``: the agent's last words play first); the model
  is answered once the carrier has answered: success, after which our side of the call ends
  (``end_reason`` ``transferred``), or the carrier's refusal as an error, and the call goes on.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

from ..exceptions import VoiceAgentsError
from ..providers.base import ToolCall
from . import transfer

if TYPE_CHECKING:
    from .session import CallSession

#: Longest wait, after ``end_call``, for the agent's last words to play before hanging up.
END_CALL_GRACE_S = 10.0
#: Time the model gets after an ``end_call`` result to start its goodbye.
GOODBYE_START_S = 0.5

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
    await asyncio.sleep(GOODBYE_START_S)
    await session.end_after_playout("agent_hangup", grace_s=END_CALL_GRACE_S)


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
