"""Transferring a live Twilio call: replace its TwiML with a ``<Dial>`` to the target.

The update (``rest.update_call``) ends our ``<Connect><Stream>`` at once: Twilio sends ``stop`` and
then runs the new document, dialling the target with our number as caller ID.
"""

from __future__ import annotations

from .. import TWILIO
from ..transfer import TransferTarget, account_or_refusal, live_call, our_number
from . import twiml
from .rest import TwilioAccount, update_call


def transfer_target(call_id) -> TransferTarget:
    """The call's CallSid, our number and Twilio account (sync: reads the database)."""
    call = live_call(call_id, TWILIO.id)
    account = account_or_refusal(TwilioAccount.from_credential, call)
    return TransferTarget(call.carrier_call_id, our_number(call), account)


async def transfer(target: TransferTarget, number: str, *, announcement: str = "") -> None:
    """Dial ``number`` in place of the stream; ``CarrierAPIError`` when Twilio refuses."""
    document = twiml.dial(number, caller_id=target.our_number, announcement=announcement)
    await update_call(target.account, target.carrier_call_id, {"Twiml": document})
