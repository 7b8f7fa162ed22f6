"""Admin of calls: read-only records, listed to fit a laptop screen, with a conversation view.

The call page shows a live call's actions (``call_actions``: hang up, transfer, say), the
call's fields, then (template ``admin/voiceagents/call/change_form.html``)
the recording with a level strip of both sides, the transcript as a dialogue whose turns seek the
player, the timeline in sentences and the metrics as labelled figures (``conversation``).
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import ranges
from ..call.control import send_call_command
from ..models import Call
from ..services import LIVE_STATUSES
from . import call_actions
from .call_cost import cost_html
from .call_quality import response_median
from .call_text import clock_duration, end_reason_text, status_with_reason
from .conversation import page_context

#: A speaker, for the list's recording column (inline, so it needs no extra request).
SPEAKER_ICON = (
    '<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true">'
    '<path fill="currentColor" d="M2 6h3l4-3v10l-4-3H2z"/>'
    '<path fill="none" stroke="currentColor" stroke-width="1.4" d="M11 5.5a3.5 3.5 0 0 1 0 5'
    'M12.5 3.5a6 6 0 0 1 0 9"/></svg>'
)


class EndReasonFilter(admin.SimpleListFilter):
    """The end reasons calls really have, in the operator's words."""

    title = _("end reason")
    parameter_name = "end_reason"

    def lookups(self, request, model_admin):
        reasons = (
            Call.objects.exclude(end_reason="")
            .order_by("end_reason")
            .values_list("end_reason", flat=True)
            .distinct()
        )
        return [(reason, end_reason_text(reason)) for reason in reasons]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(end_reason=self.value())
        return queryset


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    date_hierarchy = "created_at"
    list_display = [
        "when",
        "from_to",
        "agent_name",
        "status_and_reason",
        "length_and_reply",
        "recording_link",
    ]
    list_filter = [
        "status",
        EndReasonFilter,
        "agent",
        "carrier",
        "direction",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = [
        "from_number",
        "to_number",
        "carrier_call_id",
        "provider_session_id",
        "transcript__text",
    ]
    search_help_text = _(
        "A phone number, a carrier or provider call ID, or words said in the call."
    )
    actions = ["hang_up"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("direction", "status", "answered_by"),
                    ("from_number", "to_number"),
                    ("agent", "phone_number"),
                    ("carrier", "carrier_call_id", "stream_id"),
                    ("provider", "provider_session_id"),
                ]
            },
        ),
        (
            _("Timing"),
            {
                "fields": [
                    ("created_at", "answered_at", "ended_at"),
                    ("length", "recording_length"),
                    ("end_reason_display", "error"),
                ]
            },
        ),
        (_("Cost"), {"fields": ["cost_summary"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agent", "phone_number")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Call._meta.fields] + [
            "length",
            "recording_length",
            "end_reason_display",
            "cost_summary",
        ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Calls are records: viewable, never edited by hand.
        return False

    def has_hangup_permission(self, request):
        # Acting on a live call needs the change permission, although the record stays read-only.
        return request.user.has_perm("voiceagents.change_call")

    @admin.action(description=_("Hang up selected live calls"), permissions=["hangup"])
    def hang_up(self, request, queryset):
        """Send ``hangup`` to each live call's group; the process holding the call ends it."""
        live = list(queryset.filter(status__in=LIVE_STATUSES).values_list("pk", flat=True))
        for call_id in live:
            send_call_command(call_id, "hangup", reason="operator_hangup")
        skipped = queryset.count() - len(live)
        self.message_user(
            request,
            ngettext(
                "Hang-up sent to %(count)d live call.",
                "Hang-up sent to %(count)d live calls.",
                len(live),
            )
            % {"count": len(live)}
            + (
                " "
                + ngettext(
                    "%(count)d call was not live and was left alone.",
                    "%(count)d calls were not live and were left alone.",
                    skipped,
                )
                % {"count": skipped}
                if skipped
                else ""
            ),
        )

    # -- list columns ----------------------------------------------------------------------------

    @admin.display(description=_("when"), ordering="created_at")
    def when(self, obj):
        return date_format(timezone.localtime(obj.created_at), "SHORT_DATETIME_FORMAT")

    @admin.display(description=_("from → to"))
    def from_to(self, obj):
        return format_html(
            '<span title="{}">{} → {}</span>',
            obj.get_direction_display(),
            obj.from_number or "?",
            obj.to_number or "?",
        )

    @admin.display(description=_("agent"), ordering="agent__name")
    def agent_name(self, obj):
        # Not the ``agent`` field itself: the admin keeps foreign keys on one line, and a long
        # agent name would then push the last columns off a laptop screen.
        return obj.agent.name if obj.agent else "—"

    @admin.display(description=_("status"), ordering="status")
    def status_and_reason(self, obj):
        return status_with_reason(obj)

    @admin.display(description=_("duration"), ordering="duration")
    def length(self, obj):
        return clock_duration(obj.duration)

    @admin.display(description=_("duration"), ordering="duration")
    def length_and_reply(self, obj):
        # The median reply time under the duration: how quickly the agent answered, at a glance,
        # without a column of its own (the list must fit a 1280 px screen).
        reply = response_median(obj.metrics)
        if not reply:
            return clock_duration(obj.duration)
        return format_html(
            '{}<br><span class="call-reply" title="{}">{}</span>',
            clock_duration(obj.duration),
            _("Median time from the caller stopping to the agent's reply"),
            _("reply %(time)s") % {"time": reply},
        )

    @admin.display(description=_("recording length"))
    def recording_length(self, obj):
        return clock_duration(obj.recording_duration)

    @admin.display(description=_("estimated cost"))
    def cost_summary(self, obj):
        return cost_html(obj.cost)

    @admin.display(description=_("end reason"))
    def end_reason_display(self, obj):
        return end_reason_text(obj.end_reason) or "—"

    @admin.display(description=_("recording"))
    def recording_link(self, obj):
        if not obj.recording:
            return ""
        return format_html(
            '<a href="{}" class="call-recording-link" title="{}" aria-label="{}">{}</a>',
            reverse("admin:voiceagents_call_recording", args=[obj.pk]),
            _("Listen to the recording"),
            _("Recording"),
            mark_safe(SPEAKER_ICON),  # a constant of this module
        )

    # -- the call page ---------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            recording_url = (
                reverse("admin:voiceagents_call_recording", args=[obj.pk]) if obj.recording else ""
            )
            context.update(page_context(obj, recording_url))
            context.update(call_actions.action_context(request, obj))
            if obj.provider_report:
                context["provider_report"] = json.dumps(obj.provider_report, indent=2)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<uuid:call_id>/recording/",
                self.admin_site.admin_view(self.recording_view),
                name="voiceagents_call_recording",
            ),
            path(
                "<uuid:call_id>/actions/<str:action>/",
                self.admin_site.admin_view(call_actions.call_action),
                name="voiceagents_call_action",
            ),
            *super().get_urls(),
        ]

    def recording_view(self, request, call_id):
        """Serve a recording to staff who may view calls (recordings are never public media),
        in byte ranges when asked (see ``voiceagents.ranges``)."""
        call = get_object_or_404(Call, pk=call_id)
        if not self.has_view_permission(request, call):
            raise PermissionDenied
        if not call.recording:
            raise Http404("This call has no recording.")
        try:
            size = call.recording.size
            handle = call.recording.open("rb")
        except FileNotFoundError as err:
            raise Http404("The recording file is missing from storage.") from err
        # Byte ranges: a browser seeks in the WAV (a turn of the conversation view) with them.
        return ranges.file_response(
            request, handle, size=size, content_type="audio/wav", filename=f"call-{call.pk}.wav"
        )
