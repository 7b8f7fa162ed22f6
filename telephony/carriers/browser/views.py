"""The browser test call's pages: the call page, its start, and its live transcript.

All three are for staff only (``staff_member_required``: anyone else is sent to the admin login).
Pressing Start on the page POSTs to ``start_test_call``, which creates the ``Call`` as a carrier's
voice webhook would (inbound, ringing, carrier ``browser``) and hands the page what Twilio gets in
its TwiML: the call id, a single-use stream token bound to the call, and the carrier call id the
token's ``start`` must name. Each Start is a new call.
"""

from __future__ import annotations

import logging
import uuid

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from voiceagents.call import streamtokens
from voiceagents.models import Agent, Call, CallStatus, Direction

logger = logging.getLogger(__name__)

CARRIER = "browser"
#: Where ``telephony.routing`` serves the consumer (WebSocket routes cannot be reversed).
MEDIA_PATH = f"/telephony/{CARRIER}/media/"


@staff_member_required
@require_GET
def test_call_page(request, agent_id: int):
    """The page with the Start/Hang up button, the live transcript and the audio meter."""
    agent = get_object_or_404(Agent, pk=agent_id)
    context = {
        **admin.site.each_context(request),
        "title": f"Test call: {agent.name}",
        "agent": agent,
        "media_path": MEDIA_PATH,
    }
    return render(request, "telephony/browser_call.html", context)


@staff_member_required
@require_POST
def start_test_call(request, agent_id: int):
    """Create the call and return what the page's ``start`` frame carries (JSON)."""
    agent = get_object_or_404(Agent, pk=agent_id)
    if not agent.enabled:
        return JsonResponse({"error": "This agent is disabled: enable it to test it."}, status=409)
    call = Call.objects.create(
        agent=agent,
        carrier=CARRIER,
        carrier_call_id=f"browser-{uuid.uuid4().hex}",
        direction=Direction.INBOUND,
        from_number=f"browser:{request.user.get_username()}"[:64],
        to_number=f"agent:{agent.slug}"[:64],
        provider=agent.provider,
        status=CallStatus.RINGING,
    )
    logger.info(
        "browser call %s: started by %s, agent %s", call.pk, request.user.get_username(), agent.slug
    )
    return JsonResponse(
        {
            "call_id": str(call.pk),
            "token": streamtokens.mint(call.pk),
            "stream_id": uuid.uuid4().hex,
            "carrier_call_id": call.carrier_call_id,
        }
    )


@staff_member_required
@require_GET
def call_transcript(request, call_id):
    """The call's status and the transcript written so far (the page polls it)."""
    call = get_object_or_404(Call, pk=call_id, carrier=CARRIER)
    entries = [
        {"seq": e.seq, "role": e.role, "text": e.text, "interrupted": e.interrupted}
        for e in call.transcript.order_by("seq")
    ]
    return JsonResponse(
        {
            "status": call.status,
            "final": call.is_final,
            "end_reason": call.end_reason,
            "transcript": entries,
        }
    )
