"""Transfers carried out on the carrier: the agent's ``transfer_call`` and an operator's "Transfer to…".

Who may transfer where is decided before this module runs (``tools`` for the agent, the control
plane for operators; docs/call-control.md#who-may-transfer-where). Here the transfer happens:

1. the agent's words already sent to the carrier play out (``TRANSFER_GRACE_S`` at most), so a
   "let me put you through" is heard before the line changes hands;
2. the carrier is asked (``CarrierLink.transfer``: Twilio replaces the call's TwiML with a
   ``<Dial>``, Telnyx gets ``actions/transfer``);
3. accepted: a ``transfer`` event with ``done=True`` goes on the timeline and the call ends for us
   with ``end_reason`` ``transferred`` (the caller stays on the line with the target);
   refused (an HTTP error, no answer, a carrier without transfers): the event says
   ``done=False`` with the carrier's message, it is logged, and the call goes on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..exceptions import VoiceAgentsError

if TYPE_CHECKING:
    from .session import CallSession

#: Longest wait for the agent audio already sent to play before the carrier is asked.
TRANSFER_GRACE_S = 5.0
#: ``end_reason`` of a call handed to another number.
TRANSFERRED = "transferred"


async def wait_for_playout(session: CallSession, grace_s: float = TRANSFER_GRACE_S) -> None:
    loop = session.loop
    deadline = loop.time() + grace_s
    while loop.time() < deadline and session.playback.is_playing(loop.time()):
        await asyncio.sleep(0.05)


async def carry_out(
    session: CallSession,
    number: str,
    *,
    by: str,
    announcement: str = "",
    wait: bool = True,
    **event_data,
) -> str | None:
    """Transfer the call to ``number`` (already allowed); None once the carrier accepted it, else
    the refusal, in words for the model or the operator. ``by``: ``agent`` or ``operator``.

    Does not end the call: the caller ends it (``end_transferred``) once the model was answered.
    """
    if wait:
        await wait_for_playout(session)
    try:
        await session.carrier.transfer(number, announcement=announcement)
    except VoiceAgentsError as err:
        message = str(err.args[0]) if err.args else err.__class__.__name__
        session.log.warning("transfer to %s not carried out: %s", number, message)
        session.record_event(
            "transfer", number=number, by=by, done=False, error=message[:300], **event_data
        )
        return message
    session.log.info("transferred to %s (asked by the %s)", number, by)
    session.record_event("transfer", number=number, by=by, done=True, **event_data)
    return None


async def end_transferred(session: CallSession) -> None:
    """End our side of a transferred call (the carrier keeps the caller with the target)."""
    await session.end(TRANSFERRED)
