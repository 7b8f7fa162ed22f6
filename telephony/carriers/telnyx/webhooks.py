"""Telnyx's Call Control webhook: one URL for every call event
(docs/carriers/telnyx.md#wire-protocol).

Verify the Ed25519 signature over the raw body, then parse; deduplicate on the event id (Telnyx
retries); then act:

- ``call.initiated`` (incoming): create the ``Call``; answer, then ``streaming_start`` a
  bidirectional RTP stream to our consumer in the number's codec, with a single-use stream token
  as the stream's auth token and the call id in ``client_state``. Calls no agent can take are
  answered with a short spoken apology (``speak``), then hung up on ``call.speak.ended``.
- ``call.answered``, ``streaming.*``, ``call.hangup``: keep the ``Call`` in step (``calls``).
- ``call.machine[.premium].detection.ended``: an outbound call's answering-machine verdict, stored
  and sent to the live call (``voiceagents.outbound.amd_result``).

The view is async. Under ASGI, Django runs every sync view in one shared thread, so a sync view
waiting on Telnyx's API (two round trips per incoming call) would hold up every other sync request
of the process; here the REST commands are awaited on the event loop, and only the short database
transactions hop to that thread. Under WSGI it works as well, in a per-request event loop.

Answers: 200 once acted on (or for a repeated event), 400 for a body that is not a Telnyx event,
403/503 from verification, 503 when Telnyx's API was unreachable (the claim on the event is
released so that Telnyx's retry is acted on; every command carries a deterministic
``command_id``, so a retry never acts twice), and 503 too when the database failed or nothing was
answered within ``WEBHOOK_DEADLINE`` (``CarrierWebhookView``), for Telnyx to retry.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from voiceagents import outbound
from voiceagents.call import callsetup, streamtokens
from voiceagents.exceptions import CarrierAPIError
from voiceagents.models import Call

from ... import limits
from .. import TELNYX, lifecycle
from ..base import CarrierWebhookView, websocket_url
from . import calls, signature
from .events import MODE_AGENT, MODE_APOLOGY, ClientState, MalformedEvent, TelnyxEvent
from .rest import TelnyxAccount, TelnyxCallControl, error_codes, is_transient

logger = logging.getLogger(__name__)

#: Path of the Telnyx media-stream WebSocket under PUBLIC_URL (routed in ``telephony.routing``).
MEDIA_PATH = "/telephony/telnyx/media/"


def media_stream_url(base_url: str | None = None) -> str:
    """``wss://<public host>/telephony/telnyx/media/``, from ``PUBLIC_URL`` unless given."""
    return websocket_url(MEDIA_PATH, base_url)


class RetryLater(Exception):
    """Telnyx's API could not be reached: answer 503 so that Telnyx delivers the event again."""


class TelnyxSignatureMixin:
    """Verifier for ``telnyx-signature-ed25519`` on Django requests.

    The algorithm: docs/carriers/telnyx.md#webhook-signature.

    Checks the raw body against every Telnyx key we hold, before anything parses it, and keeps
    the keys that matched in ``self.signers`` so that handlers can check the call's account.
    """

    signers: list[signature.PublicKey] | None = None

    def verify_telnyx_signature(self, request: HttpRequest) -> None:
        keys = signature.webhook_public_keys()
        self.signers = signature.verify(
            request.body,
            request.headers.get(signature.SIGNATURE_HEADER),
            request.headers.get(signature.TIMESTAMP_HEADER),
            keys,
        )


class TelnyxWebhookView(TelnyxSignatureMixin, CarrierWebhookView):
    """Every Call Control event of a Telnyx Call Control Application (see the module docstring)."""

    carrier = TELNYX.id
    verifiers = ("verify_telnyx_signature",)
    #: The vendor's message of the last command Telnyx refused, for the call's error field.
    refusal = ""

    async def answer(self, request: HttpRequest) -> HttpResponse:
        rejection = await sync_to_async(self.run_verifiers)(request)
        if rejection is not None:
            return rejection
        try:
            event = self.parse(request)
        except MalformedEvent as err:
            logger.warning("Telnyx webhook refused: %s", err)
            return HttpResponseBadRequest(str(err), content_type="text/plain")
        if not await sync_to_async(calls.claim_event)(event):
            logger.info("Telnyx %s %s delivered again; ignored", event.event_type, event.event_id)
            return HttpResponse(status=200)
        try:
            await self.handle_event(event)
        except RetryLater as err:
            await sync_to_async(calls.release_event)(event)
            logger.warning(
                "Telnyx %s %s: %s; Telnyx will retry", event.event_type, event.event_id, err
            )
            return HttpResponse("Telnyx API unreachable", status=503, content_type="text/plain")
        except Exception:
            await sync_to_async(calls.release_event)(event)
            raise
        return HttpResponse(status=200)

    def parse(self, request: HttpRequest) -> TelnyxEvent:
        return TelnyxEvent.from_body(request.body)

    async def handle_event(self, event: TelnyxEvent) -> None:
        handler = {
            "call.initiated": self.on_initiated,
            "call.answered": self.on_answered,
            "call.speak.ended": self.on_speak_ended,
            "streaming.started": self.on_streaming,
            "streaming.stopped": self.on_streaming,
            "streaming.failed": self.on_streaming,
            "call.hangup": self.on_hangup,
            "call.machine.detection.ended": self.on_machine_detection,
            "call.machine.premium.detection.ended": self.on_machine_detection,
        }.get(event.event_type)
        if handler is None:
            logger.debug("Telnyx %s ignored", event.event_type)
            return
        await handler(event)

    # -- incoming call --------------------------------------------------------------------------

    async def on_initiated(self, event: TelnyxEvent) -> None:
        if event.get("direction") != "incoming":
            # Outbound calls are commanded by whoever dialled them.
            logger.debug("Telnyx outgoing call.initiated %s ignored", event.call_control_id)
            return
        if not event.call_control_id:
            logger.warning(
                "Telnyx call.initiated %s without a call_control_id ignored", event.event_id
            )
            return
        inbound = await sync_to_async(calls.record_inbound_call)(event, self.signers)
        call = inbound.call
        if inbound.action == calls.NOTHING:
            return
        if inbound.account is None:
            if inbound.action == calls.CONNECT:
                await sync_to_async(calls.mark_command_failure)(
                    call.pk, "configuration_error", "No Telnyx API key to answer the call with."
                )
            return
        refused = limits.refusal() if inbound.action == calls.CONNECT else None
        if refused is not None:
            # This process runs MAX_CALLS_PER_PROCESS calls already, or is stopping: busy, rather
            # than a bad call. The call fails once rejected: if Telnyx is unreachable, its retry
            # decides again.
            logger.warning("Telnyx call %s refused: %s", call.pk, refused[0])
            async with TelnyxCallControl(inbound.account) as rest:
                await self.run(
                    rest.reject(event.call_control_id, "USER_BUSY", command_id=f"reject-{call.pk}"),
                    call,
                    "reject",
                )
            await sync_to_async(callsetup.fail_before_start)(call.pk, *refused)
            return
        async with TelnyxCallControl(inbound.account) as rest:
            if inbound.action == calls.CONNECT:
                await self.connect_call(rest, event, inbound)
            else:
                state = ClientState(str(call.pk), MODE_APOLOGY).encode()
                await self.run(
                    rest.answer(
                        event.call_control_id, client_state=state, command_id=f"answer-{call.pk}"
                    ),
                    call,
                    "answer",
                )

    async def connect_call(
        self, rest: TelnyxCallControl, event: TelnyxEvent, inbound: calls.InboundCall
    ) -> None:
        """Answer, then stream the call to our consumer (``answer`` cannot carry the auth token)."""
        call, codec = inbound.call, inbound.codec
        state = ClientState(str(call.pk), MODE_AGENT, codec.name).encode()
        ccid = event.call_control_id
        if not await self.run(
            rest.answer(ccid, client_state=state, command_id=f"answer-{call.pk}"), call, "answer"
        ):
            return
        # A fresh token on every attempt: any unspent token minted for the call is valid.
        params = codec.streaming_params(
            media_stream_url(),
            auth_token=streamtokens.mint(call.pk),
            client_state=state,
            call_id=str(call.pk),
        )
        if not await self.run(
            rest.start_streaming(ccid, params, command_id=f"stream-{call.pk}"),
            call,
            "streaming_start",
        ):
            await sync_to_async(calls.mark_command_failure)(
                call.pk, "carrier_error", f"Telnyx refused streaming_start: {self.refusal}"
            )
            await self.run(rest.hangup(ccid, command_id=f"hangup-{call.pk}"), call, "hangup")
            return
        logger.info(
            "Telnyx call %s answered; streaming %s/%s", call.pk, codec.name, codec.sample_rate
        )

    async def run(self, command, call: Call, what: str) -> bool:
        """Await one REST command: True if accepted, False if refused; RetryLater if unreachable."""
        try:
            await command
        except CarrierAPIError as err:
            if is_transient(err):
                raise RetryLater(f"{what} for call {call.pk} failed: {err}") from err
            # E.g. 90018 "Call has already ended": its call.hangup follows and ends the call.
            self.refusal = str(err)
            logger.warning(
                "Telnyx %s for call %s refused (%s): %s",
                what,
                call.pk,
                ",".join(error_codes(err)),
                err,
            )
            return False
        return True

    # -- later events ---------------------------------------------------------------------------

    async def on_answered(self, event: TelnyxEvent) -> None:
        state = event.client_state
        if state is not None and state.mode == MODE_APOLOGY:
            await self.apologise(event)
            return
        await sync_to_async(calls.apply_answered)(event)

    async def apologise(self, event: TelnyxEvent) -> None:
        """Say the apology to a refused call; ``call.speak.ended`` then hangs it up."""
        call, account = await self._call_and_account(event)
        if call is None or account is None:
            return
        async with TelnyxCallControl(account) as rest:
            state = ClientState(str(call.pk), MODE_APOLOGY).encode()
            spoken = await self.run(
                rest.speak(
                    event.call_control_id,
                    lifecycle.APOLOGY,
                    client_state=state,
                    command_id=f"apology-{call.pk}",
                ),
                call,
                "speak",
            )
            if not spoken:
                await self.run(
                    rest.hangup(event.call_control_id, command_id=f"hangup-{call.pk}"),
                    call,
                    "hangup",
                )

    async def on_speak_ended(self, event: TelnyxEvent) -> None:
        state = event.client_state
        if state is None or state.mode != MODE_APOLOGY:
            return
        call, account = await self._call_and_account(event)
        if call is not None and account is not None:
            async with TelnyxCallControl(account) as rest:
                await self.run(
                    rest.hangup(event.call_control_id, command_id=f"hangup-{call.pk}"),
                    call,
                    "hangup",
                )

    async def on_streaming(self, event: TelnyxEvent) -> None:
        if await sync_to_async(calls.apply_streaming)(event) != "failed":
            return
        call, account = await self._call_and_account(event)
        if call is not None and account is not None:
            async with TelnyxCallControl(account) as rest:
                await self.run(
                    rest.hangup(event.call_control_id, command_id=f"hangup-{call.pk}"),
                    call,
                    "hangup",
                )

    async def on_hangup(self, event: TelnyxEvent) -> None:
        outcome = await sync_to_async(calls.apply_hangup)(event)
        if outcome == "unknown_call":
            logger.info("Telnyx call.hangup for unknown call %s ignored", event.call_control_id)

    async def on_machine_detection(self, event: TelnyxEvent) -> None:
        """An outbound call's answering-machine verdict (``result``), for its live session."""

        def record() -> None:
            call = calls.find_call(event)
            if call is None:
                logger.info("Telnyx %s for unknown call ignored", event.event_type)
                return
            outbound.amd_result(call, event.get("result")[:40], {"carrier_event": event.event_type})

        await sync_to_async(record)()

    async def _call_and_account(
        self, event: TelnyxEvent
    ) -> tuple[Call | None, TelnyxAccount | None]:
        def load():
            call = calls.find_call(event)
            if call is None:
                logger.info(
                    "Telnyx %s for unknown call %s ignored", event.event_type, event.call_control_id
                )
                return None, None
            return call, calls.call_account(call, self.signers)

        return await sync_to_async(load)()
