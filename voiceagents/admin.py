"""Admin for agents, credentials, phone numbers and calls."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .call.control import send_call_command
from .exceptions import ProvisioningError
from .forms import AgentForm, CredentialForm, PhoneNumberForm
from .models import Agent, Call, CallEvent, Credential, PhoneNumber, TranscriptEntry
from .providers import providers
from .providers.elevenlabs_agents import PROVIDER_ID as ELEVENLABS_CONVAI
from .providers.elevenlabs_agents import sync_agent
from .services import LIVE_STATUSES
from .vendors import vendors


def _spec_list(pairs) -> str:
    """An HTML list of ``(name, text)`` pairs for a fieldset description (escaped)."""
    return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: {}</li>", pairs))


class SpecDataAdmin(admin.ModelAdmin):
    """Admin of a model with per-spec data; its form generates one fieldset per spec."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The model fields only (the change view passes its fieldsets' fields): the form adds
        # the generated per-spec fields itself.
        kwargs["fields"] = self.form.Meta.fields
        return super().get_form(request, obj, change, **kwargs)


@admin.register(Credential)
class CredentialAdmin(SpecDataAdmin):
    form = CredentialForm
    list_display = ["label", "vendor", "is_default", "updated_at"]
    list_filter = ["vendor", "is_default"]
    # ``data`` holds the vendor's account identifiers (Twilio account SID, Telnyx connection ID).
    search_fields = ["label", "data"]
    readonly_fields = ["secret_hint_display", "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        secrets = _spec_list((v.name, v.secret_help) for v in vendors if v.secret_help)
        return [
            (
                None,
                {
                    "fields": ["vendor", "label", "secret", "secret_hint_display", "is_default"],
                    "description": secrets,
                },
            ),
            *self.form.data_fieldsets(),
            (_("Advanced"), {"fields": ["api_base_url", "created_at", "updated_at"]}),
        ]

    @admin.display(description=_("current secret"))
    def secret_hint_display(self, obj):
        return obj.secret_hint() if obj and obj.pk else "—"


class PhoneNumberInline(admin.TabularInline):
    model = PhoneNumber
    fields = ["number", "carrier", "enabled"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["name", "slug", "provider", "enabled", "language", "updated_at"]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "slug", "system_prompt"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PhoneNumberInline]
    readonly_fields = ["remote_status", "test_call"]
    actions = ["sync_to_elevenlabs"]

    def get_fieldsets(self, request, obj=None):
        """The static fieldsets; the first describes every registered voice architecture."""
        main = {
            **self.fieldsets[0][1],
            "description": _spec_list((spec.name, spec.description) for spec in providers),
        }
        return [(None, main), *self.fieldsets[1:]]

    fieldsets = [
        (None, {"fields": ["name", "slug", "enabled", "provider", "credential", "test_call"]}),
        (
            _("Conversation"),
            {
                "fields": [
                    "system_prompt",
                    "first_message",
                    "variables",
                    "language",
                    "model",
                    "voice",
                ],
                "description": _(
                    'Like the seed\'s phone.agent(system_prompt="You are a helpful assistant.", '
                    'voice="alloy"). Placeholders such as {company} are filled from the variables.'
                ),
            },
        ),
        (
            _("Pipeline"),
            {
                "fields": [
                    ("stt_provider", "stt_credential", "stt_language"),
                    ("tts_provider", "tts_credential", "tts_voice"),
                    "reply_handler",
                    ("reply_prompt",),
                    ("reply_provider", "reply_model", "reply_credential"),
                ],
                "description": _(
                    'provider="pipeline": a speech-to-text stage (stt=Patter.deepgram(...)), an '
                    "on_message reply handler or an LLM prompt, and a text-to-speech stage "
                    '(tts=Patter.elevenlabs(voice="rachel")). A stage without a chosen credential '
                    "uses the agent's credential when it is of the stage's vendor, else the "
                    "vendor's default credential."
                ),
            },
        ),
        (
            _("Calls"),
            {
                "fields": [
                    "provider_options",
                    "record_calls",
                    "max_call_duration",
                    "transfer_allowlist",
                ]
            },
        ),
        (
            _("ElevenLabs Conversational AI"),
            {
                "fields": ["remote_agent_id", "remote_status"],
                "description": _(
                    "Only for the ElevenLabs Conversational AI voice architecture. Leave the "
                    "remote agent ID blank and we create the ElevenLabs agent (one per audio "
                    "format your carriers need) and update it whenever you save this page."
                ),
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        """Save, then bring the agent's ElevenLabs agents up to date (a refusal never undoes the
        save: it is shown, and stored on the agent)."""
        super().save_model(request, obj, form, change)
        if _elevenlabs_managed(obj) and obj.remote_agents:
            self._sync(request, obj, force=False)

    @admin.action(description=_("Sync to ElevenLabs"), permissions=["change"])
    def sync_to_elevenlabs(self, request, queryset):
        """Create or update the ElevenLabs agents of the selected ElevenLabs agents."""
        skipped = 0
        for agent in queryset:
            if _elevenlabs_managed(agent):
                self._sync(request, agent, force=True)  # reports its own outcome
            else:
                skipped += 1
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d agent was skipped: only ElevenLabs Conversational AI agents "
                    "without a remote agent ID of their own are synced.",
                    "%(count)d agents were skipped: only ElevenLabs Conversational AI agents "
                    "without a remote agent ID of their own are synced.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    def _sync(self, request, agent, *, force: bool) -> None:
        try:
            sync_agent(agent, force=force)
        except ProvisioningError as err:
            self.message_user(
                request,
                _("%(agent)s: ElevenLabs sync failed: %(error)s")
                % {"agent": agent, "error": err.args[0]},
                messages.ERROR,
            )
            return
        synced = ", ".join(
            f"{fmt} → {entry['agent_id']}" for fmt, entry in agent.remote_agents.items()
        )
        self.message_user(
            request,
            _("%(agent)s: in sync with ElevenLabs (%(agents)s).")
            % {"agent": agent, "agents": synced},
            messages.SUCCESS,
        )

    @admin.display(description=_("Test call"))
    def test_call(self, obj):
        """A link to the browser test call (telephony's ``browser`` carrier), once saved."""
        if obj is None or not obj.pk:
            return _("Save the agent first.")
        try:
            url = reverse("telephony:browser_call", args=[obj.pk])
        except NoReverseMatch:  # the telephony app's URLs are not installed
            return "—"
        return format_html(
            '<a class="button" href="{}" id="test-call-link">{}</a> {}',
            url,
            _("Test call"),
            _("Talk to this agent from your browser, with your microphone."),
        )

    @admin.display(description=_("ElevenLabs agents"))
    def remote_status(self, obj):
        if obj is None or not obj.pk:
            return "—"
        if obj.provider != ELEVENLABS_CONVAI:
            return _("Not used: this agent has another voice architecture.")
        if obj.remote_agent_id:
            status = format_html("{}", _("Your own agent (above), used as is."))
        elif obj.remote_agents:
            status = format_html(
                "<ul>{}</ul>",
                format_html_join(
                    "",
                    "<li>{}: <code>{}</code></li>",
                    ((fmt, entry.get("agent_id", "")) for fmt, entry in obj.remote_agents.items()),
                ),
            )
        else:
            status = format_html(
                "{}",
                _(
                    "None yet: created at the first call, or with the "
                    "“Sync to ElevenLabs” action of the agent list."
                ),
            )
        synced = (
            format_html(
                "<p>{} {}</p>",
                _("Last synced:"),
                date_format(localtime(obj.remote_synced_at), "DATETIME_FORMAT"),
            )
            if obj.remote_synced_at
            else ""
        )
        error = (
            format_html(
                '<p style="color: var(--error-fg, #ba2121)"><strong>{}</strong> {}</p>',
                _("Last sync failed:"),
                obj.remote_sync_error,
            )
            if obj.remote_sync_error
            else ""
        )
        return format_html("{}{}{}", status, synced, error)


def _elevenlabs_managed(agent) -> bool:
    """An ElevenLabs ConvAI agent whose ElevenLabs agents we create and keep in sync."""
    return agent.provider == ELEVENLABS_CONVAI and not agent.remote_agent_id


@admin.register(PhoneNumber)
class PhoneNumberAdmin(SpecDataAdmin):
    form = PhoneNumberForm
    list_display = ["number", "label", "carrier", "agent", "enabled"]
    list_filter = ["carrier", "enabled", "agent"]
    search_fields = ["number", "label"]
    list_select_related = ["agent"]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["number", "label", "carrier", "credential", "agent", "enabled"]}),
            *self.form.data_fieldsets(),
        ]


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
        """Serve a recording to staff who may view calls (recordings are never public media)."""
        call = get_object_or_404(Call, pk=call_id)
        if not self.has_view_permission(request, call):
            raise PermissionDenied
        if not call.recording:
            raise Http404("This call has no recording.")
        try:
            handle = call.recording.open("rb")
        except FileNotFoundError as err:
            raise Http404("The recording file is missing from storage.") from err
        return FileResponse(handle, content_type="audio/wav", filename=f"call-{call.pk}.wav")
