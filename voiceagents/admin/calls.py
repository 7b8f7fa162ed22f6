"""Admin of calls: read-only records with their transcript, timeline, recording and metrics."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import ranges
from ..call.control import send_call_command
from ..models import Call, CallEvent, TranscriptEntry
from ..services import LIVE_STATUSES


class ReadOnlyInline(admin.TabularInline):
    """A call's transcript and timeline: part of the call, visible to whoever may view it."""

    extra = 0
    can_delete = False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("voiceagents.view_call")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TranscriptInline(ReadOnlyInline):
    model = TranscriptEntry
    fields = ["seq", "role", "text", "start_ms", "end_ms", "interrupted"]
    readonly_fields = fields
    ordering = ["seq"]
    verbose_name_plural = _("transcript")


class CallEventInline(ReadOnlyInline):
    model = CallEvent
    fields = ["kind", "at_ms", "data", "created_at"]
    readonly_fields = fields
    verbose_name_plural = _("timeline")


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    date_hierarchy = "created_at"
    list_display = [
        "created_at",
        "direction",
        "from_number",
        "to_number",
        "agent",
        "carrier",
        "status",
        "duration",
        "has_recording",
    ]
    list_filter = ["status", "direction", "carrier", "agent"]
    search_fields = [
        "from_number",
        "to_number",
        "carrier_call_id",
        "provider_session_id",
        "transcript__text",
    ]
    inlines = [TranscriptInline, CallEventInline]
    actions = ["hang_up"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("direction", "status"),
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
                    "duration",
                    ("end_reason", "error"),
                ]
            },
        ),
        (_("Recording"), {"fields": ["recording_player", "recording_duration"]}),
        (_("Metrics"), {"fields": ["metrics_display"]}),
        (
            _("Provider's report"),
            {
                "fields": ["provider_report_display"],
                "classes": ["collapse"],
                "description": _(
                    "What the voice provider kept about the call, fetched after it ended when "
                    "enabled (ElevenLabs: VOICEAGENTS['ELEVENLABS_CONVAI_FETCH_CONVERSATION'])."
                ),
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agent", "phone_number")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Call._meta.fields] + [
            "recording_player",
            "metrics_display",
            "provider_report_display",
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

    @admin.display(boolean=True, description=_("recording"))
    def has_recording(self, obj):
        return bool(obj.recording)

    @admin.display(description=_("recording"))
    def recording_player(self, obj):
        if not obj or not obj.recording:
            return "—"
        url = reverse("admin:voiceagents_call_recording", args=[obj.pk])
        return format_html(
            '<audio controls preload="none" src="{}"></audio><br><a href="{}" download>{}</a>',
            url,
            url,
            _("Download WAV (caller left, agent right)"),
        )

    @admin.display(description=_("metrics"))
    def metrics_display(self, obj):
        if not obj or not obj.metrics:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            ((key, json.dumps(value)) for key, value in sorted(obj.metrics.items())),
        )
        return format_html("<table>{}</table>", rows)

    @admin.display(description=_("report"))
    def provider_report_display(self, obj):
        if not obj or not obj.provider_report:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.provider_report, indent=2))

    def get_urls(self):
        return [
            path(
                "<uuid:call_id>/recording/",
                self.admin_site.admin_view(self.recording_view),
                name="voiceagents_call_recording",
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
