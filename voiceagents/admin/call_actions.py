"""The call page's actions on a live call: "Hang up", "Transfer to…" and "Say…".

Each is a POST (CSRF-protected by the admin) that sends one control-plane command
(``voiceagents.call.control``); whichever process holds the call carries it out, so the page only
says that the command was sent, and the call's timeline shows what came of it. They need the
``voiceagents.change_call`` permission (the record itself stays read-only) and a live call.

Transfers are held to a closed list (``operator_transfer_refusal``): the number must be on the
call's agent's transfer allowlist or in ``VOICEAGENTS["TRANSFER_ALLOWED_NUMBERS"]``
(docs/security.md#transfers). The process holding the call checks again.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..call.control import operator_transfer_refusal, send_call_command, transfer_allowed_numbers
from ..call.tools import normalise_number
from ..models import Call
from ..services import LIVE_STATUSES

logger = logging.getLogger(__name__)

#: Longest text an operator may have the agent say.
SAY_MAX_CHARS = 500


class TransferForm(forms.Form):
    number = forms.CharField(
        label=gettext_lazy("Transfer to"),
        max_length=32,
        help_text=gettext_lazy("A number on the agent's transfer list, e.g. +14155550100."),
    )
    announcement = forms.CharField(
        label=gettext_lazy("Announcement"),
        max_length=200,
        required=False,
        help_text=gettext_lazy("Said to the caller before the transfer (Twilio only)."),
    )

    def __init__(self, *args, call: Call, **kwargs):
        super().__init__(*args, **kwargs)
        self.call = call

    def clean_number(self):
        number = normalise_number(self.cleaned_data["number"])
        refusal = operator_transfer_refusal(number, allowed_targets_of_agent(self.call))
        if refusal:
            raise forms.ValidationError(refusal)
        return number


class SayForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Say"),
        max_length=SAY_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy("The agent says this to the caller, word for word."),
    )


def allowed_targets_of_agent(call: Call) -> list[str]:
    return list((call.agent.transfer_allowlist or []) if call.agent is not None else [])


def transfer_targets(call: Call) -> list[str]:
    """Every number an operator may transfer ``call`` to, for the page's suggestions."""
    return list(dict.fromkeys(allowed_targets_of_agent(call) + list(transfer_allowed_numbers())))


def can_act(request) -> bool:
    return request.user.has_perm("voiceagents.change_call")


def action_context(request, call: Call) -> dict:
    """What the call page's action forms need (nothing when the call is over or not allowed)."""
    if call.status not in LIVE_STATUSES or not can_act(request):
        return {}
    return {
        "call_actions": True,
        "transfer_form": TransferForm(call=call),
        "say_form": SayForm(),
        "transfer_targets": transfer_targets(call),
    }


def call_action(request, call_id, action: str):
    """POST ``hang-up``, ``transfer`` or ``say`` for one live call; back to the call page."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_act(request):
        raise PermissionDenied
    call = get_object_or_404(Call.objects.select_related("agent"), pk=call_id)
    back = HttpResponseRedirect(reverse("admin:voiceagents_call_change", args=[call.pk]))
    if call.status not in LIVE_STATUSES:
        messages.error(
            request,
            _("The call is not live (%(status)s): nothing was sent.")
            % {"status": call.get_status_display()},
        )
        return back
    if action == "hang-up":
        command, params, sent = "hangup", {"reason": "operator_hangup"}, _("Hang-up sent.")
    elif action == "transfer":
        form = TransferForm(request.POST, call=call)
        if not form.is_valid():
            messages.error(request, _("Not transferred: %(why)s") % {"why": _errors(form)})
            return back
        number = form.cleaned_data["number"]
        command = "transfer"
        params = {"number": number, "announcement": form.cleaned_data["announcement"]}
        sent = _("Transfer to %(number)s sent; the timeline shows when it is done.") % {
            "number": number
        }
    elif action == "say":
        form = SayForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("Nothing said: %(why)s") % {"why": _errors(form)})
            return back
        command, params, sent = "say", {"text": form.cleaned_data["text"]}, _("Sent to the agent.")
    else:
        raise PermissionDenied
    try:
        send_call_command(call.pk, command, **params)
    except Exception:
        logger.exception("call %s: the %s command could not be sent", call.pk, command)
        messages.error(
            request, _("The command could not be sent: the channel layer is unavailable.")
        )
        return back
    logger.info("call %s: %s sent by %s", call.pk, command, request.user.get_username())
    messages.success(request, sent)
    return back


def _errors(form: forms.Form) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)
