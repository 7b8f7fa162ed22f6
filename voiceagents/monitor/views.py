"""The live monitor's pages: the monitor itself, its JSON state, and the hang-up of one call.

Staff only (``staff_member_required``: anyone else is sent to the admin login), and seeing calls
needs the ``view_call`` permission, hanging one up ``change_call`` (as the Calls list's "Hang up"
action). The hang-up goes through the control plane: whichever process holds the call ends it.
"""

from __future__ import annotations

import logging
import uuid

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from ..call.control import send_call_command
from ..models import Call
from ..services import LIVE_STATUSES
from .consumer import SOCKET_PATH
from .state import monitor_state

logger = logging.getLogger(__name__)

#: Stands for the call id in the hang-up URL the page fills in.
ANY_CALL = "00000000-0000-0000-0000-000000000000"


def _require(request, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


@staff_member_required
@require_GET
def monitor_page(request):
    """Calls in progress with their transcript so far; the page's script keeps it current."""
    _require(request, "voiceagents.view_call")
    context = {
        **admin.site.each_context(request),
        "title": "Live monitor",
        "calls": monitor_state(),
        "socket_path": SOCKET_PATH,
        "can_hang_up": request.user.has_perm("voiceagents.change_call"),
        "any_call": ANY_CALL,
    }
    return render(request, "admin/voiceagents/monitor.html", context)


@staff_member_required
@require_GET
def monitor_state_view(request):
    """``{"calls": [...]}``: the live calls, plus each ``?call=<id>`` whatever its status."""
    _require(request, "voiceagents.view_call")
    try:
        wanted = [uuid.UUID(value) for value in request.GET.getlist("call")[:50]]
    except ValueError:
        return JsonResponse({"error": "call must be a call ID (a UUID)."}, status=400)
    return JsonResponse({"calls": monitor_state(wanted)})


@staff_member_required
@require_POST
def hang_up(request, call_id):
    """Send ``hangup`` to a live call; JSON for the page's script, a redirect for a plain form."""
    _require(request, "voiceagents.change_call")
    call = get_object_or_404(Call, pk=call_id)
    if call.status not in LIVE_STATUSES:
        return _answer(request, 409, f"The call has ended already ({call.get_status_display()}).")
    try:
        send_call_command(call.pk, "hangup", reason="operator_hangup")
    except Exception:
        logger.exception("call %s: the hang-up could not be sent", call.pk)
        return _answer(
            request, 503, "The hang-up could not be sent: the channel layer is unavailable."
        )
    logger.info("call %s: hang-up sent by %s", call.pk, request.user.get_username())
    return _answer(request, 202, "Hang-up sent.")


def _answer(request, status: int, message: str):
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": status == 202, "message": message}, status=status)
    (messages.success if status == 202 else messages.error)(request, message)
    return HttpResponseRedirect(reverse("voiceagents:monitor"))
