"""Transferring a live Telnyx call: the ``transfer`` Call Control command.

Telnyx dials ``to`` (with our number as ``from``) and bridges the caller to it once answered; our
leg stays up, so our side then closes the media stream without hanging up. A target that does not
answer leaves the caller's leg up with nobody on it (Telnyx reports the target leg's
``call.hangup``); this version does not act on that yet (docs/call-control.md#limits).
"""

from __future__ import annotations

from .. import TELNYX
from ..transfer import TransferTarget, account_or_refusal, live_call, our_number
from .rest import TelnyxAccount, TelnyxCallControl


def transfer_target(call_id) -> TransferTarget:
    """The call's call_control_id, our number and Telnyx account (sync: reads the database)."""
    call = live_call(call_id, TELNYX.id)
    account = account_or_refusal(TelnyxAccount.from_credential, call)
    return TransferTarget(call.carrier_call_id, our_number(call), account)


async def transfer(target: TransferTarget, number: str) -> None:
    """``actions/transfer`` to ``number``; ``CarrierAPIError`` when Telnyx refuses.

    A fresh ``command_id`` each time: a transfer retried after a refusal is a new intent.
    """
    async with TelnyxCallControl(target.account) as rest:
        await rest.transfer(target.carrier_call_id, number, from_=target.our_number)
