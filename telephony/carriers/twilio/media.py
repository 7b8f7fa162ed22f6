"""Twilio Media Streams consumer: a bidirectional ``<Connect><Stream>`` (docs/carriers/twilio.md).

The frames are ``frames.TwilioCodec``'s; the stream, its call and its ending are the shared
``MediaStreamConsumer``'s. Twilio adds only the handshake: the WebSocket upgrade carries an
``X-Twilio-Signature`` over the stream URL. Closing the stream ends the call (``<Hangup/>``
follows ``<Connect>`` in our TwiML); a transfer replaces that TwiML with a ``<Dial>`` over REST
(``transfer``), which ends the stream and leaves the caller with the target.
"""

from __future__ import annotations

import logging

from voiceagents import dbthread
from voiceagents.audio.formats import MULAW_8K
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

from ...media import MediaStreamConsumer
from . import transfer
from .frames import TwilioCodec
from .signature import acheck_stream_handshake

logger = logging.getLogger(__name__)


class TwilioMediaConsumer(MediaStreamConsumer):
    carrier_id = "twilio"
    codec_class = TwilioCodec
    carrier_format = MULAW_8K

    async def authenticate_handshake(self) -> bool:
        try:
            await acheck_stream_handshake(self.scope)
        except WebhookValidationFailure:
            return False
        except ConfigurationError as err:
            logger.error("Twilio media stream refused: %s", err)
            return False
        return True

    async def carry_out_transfer(self, number: str, announcement: str) -> None:
        target = await dbthread.run(transfer.transfer_target, self.call_id)
        await transfer.transfer(target, number, announcement=announcement)
