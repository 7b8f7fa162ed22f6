"""Admin of agents: one voice architecture each, its conversation, stages and call settings."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..exceptions import ProvisioningError
from ..forms import AgentForm
from ..forms.outbound import OutboundCallForm
from ..models import Agent, PhoneNumber
from ..outbound import OutboundCallError, place_call
from ..providers import STAGES, providers
from ..providers.elevenlabs_agents import PROVIDER_ID as ELEVENLABS_CONVAI
from ..providers.elevenlabs_agents import sync_agent


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
    readonly_fields = ["remote_status", "test_call", "call_a_number"]
    actions = ["sync_to_elevenlabs"]

    class Media:
        css = {"all": ["voiceagents/agent_form.css"]}
        js = ["voiceagents/agent_form.js"]

    def get_fieldsets(self, request, obj=None):
        """Sections for every agent, and one per kind of voice architecture, marked with the
        architectures it is for: the page's script shows only the chosen one's."""
        agent = obj or Agent()
        return [
            (
                None,
                {
                    "fields": [
                        ("name", "slug"),
                        ("provider", "enabled"),
                        "credential",
                        # A new agent has no test call and no numbers yet.
                        *(["test_call"] if obj else []),
                    ]
                },
            ),
            _mode_fieldset(
                _("Instructions and voice"),
                lambda spec: not spec.stages,
                ["system_prompt", ("model", "voice")],
                notes=_replacement_notes(agent),
            ),
            _mode_fieldset(
                _("The agent on ElevenLabs"),
                lambda spec: bool(spec.provisioner),
                ["remote_agent_id", "remote_status"],
                _(
                    "Leave the remote agent ID blank and we create the ElevenLabs agent (one per "
                    "audio format your carriers need) and update it whenever you save this page."
                ),
            ),
            _mode_fieldset(
                _("Pipeline"),
                lambda spec: bool(spec.stages),
                [
                    ("stt_provider", "stt_credential", "stt_language"),
                    ("tts_provider", "tts_credential", "tts_voice"),
                    "reply_handler",
                    "reply_prompt",
                    ("reply_provider", "reply_model", "reply_credential"),
                ],
                _(
                    "Three steps: speech-to-text writes down what the caller says, a reply "
                    "handler or an LLM prompt answers, text-to-speech speaks the answer."
                ),
                notes=_replacement_notes(agent, stages=True),
            ),
            (
                _("Conversation"),
                {
                    "fields": ["first_message", ("language", "variables")],
                    "description": _(
                        "Placeholders such as {company} in the instructions, the reply prompt "
                        "and the first message are filled from the variables."
                    ),
                },
            ),
            (
                _("Calls"),
                {
                    "fields": [
                        *(["call_a_number"] if obj else []),
                        ("record_calls", "max_call_duration"),
                        "transfer_allowlist",
                        "tools",
                    ]
                },
            ),
            (
                _("Outbound calls: answering machines"),
                {
                    "fields": [
                        ("answering_machine_detection", "machine_action"),
                        "voicemail_message",
                    ],
                    "description": _(
                        "Calls the agent places. With answering-machine detection the agent "
                        "waits for the carrier's verdict before its first message."
                    ),
                    # Set once per agent, rarely looked at again: folded, the form stays short.
                    "classes": ["collapse"],
                },
            ),
            (_("Advanced"), {"fields": ["provider_options"], "classes": ["collapse"]}),
        ]

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        """Save, then bring the agent's ElevenLabs agents up to date (a refusal never undoes the
        save: it is shown, and stored on the agent)."""
        super().save_model(request, obj, form, change)
        for message in obj.missing_keys():
            self.message_user(request, f"{obj}: {message}", messages.WARNING)
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

    @admin.display(description=_("Call a number"))
    def call_a_number(self, obj):
        if obj is None or not obj.pk:
            return _("Save the agent first.")
        url = reverse("admin:voiceagents_agent_call_number", args=[obj.pk])
        return format_html(
            '<a class="button" href="{}" id="call-number-link">{}</a> {}',
            url,
            _("Call a number"),
            _("The agent calls a phone number from one of its numbers."),
        )

    def get_urls(self):
        return [
            path(
                "<int:agent_id>/call/",
                self.admin_site.admin_view(self.call_number_view),
                name="voiceagents_agent_call_number",
            ),
            *super().get_urls(),
        ]

    def call_number_view(self, request, agent_id):
        """The "Call a number" form; staff who may change the agent may place its calls."""
        agent = get_object_or_404(Agent, pk=agent_id)
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        form = OutboundCallForm(agent, request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                call = place_call(
                    agent,
                    data["to"],
                    from_number=data["from_number"],
                    first_message=data["first_message"],
                    variables=data["variables"],
                )
            except OutboundCallError as err:
                self.message_user(
                    request,
                    _("The call was not placed: %(error)s") % {"error": err},
                    messages.ERROR,
                )
                if err.call is not None:
                    return redirect("admin:voiceagents_call_change", err.call.pk)
            else:
                self.message_user(
                    request,
                    _("Calling %(to)s from %(from)s: the call is %(status)s.")
                    % {"to": call.to_number, "from": call.from_number, "status": call.status},
                    messages.SUCCESS,
                )
                return redirect("admin:voiceagents_call_change", call.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "agent": agent,
            "form": form,
            "has_numbers": form.fields["from_number"].queryset.exists(),
            "title": _("Call a number with %(agent)s") % {"agent": agent},
        }
        return TemplateResponse(request, "admin/voiceagents/agent/call_number.html", context)

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


def _mode_fieldset(title, uses, fields, description="", notes=""):
    """A section for the voice architectures ``uses(spec)`` selects, marked with their ids
    (``va-mode-<id>`` classes) and, for a page without the script, their names."""
    specs = [spec for spec in providers if uses(spec)]
    names = ", ".join(str(spec.name) for spec in specs)
    return (
        title,
        {
            "fields": fields,
            "classes": ["va-mode", *(f"va-mode-{spec.id}" for spec in specs)],
            "description": format_html(
                '<p class="va-for-modes">{}</p>{}{}',
                _("For %(names)s.") % {"names": names},
                format_html("<p>{}</p>", description) if description else "",
                notes,
            ),
        },
    )


def _replacement_notes(agent, *, stages: bool = False) -> str:
    """What calls send instead of a name its vendor no longer takes, for each service of the
    voice section (or of the pipeline's): the page's script shows the chosen service's."""
    if stages:
        notes = [
            *(
                n
                for spec in STAGES["tts"]
                for n in _replaced(agent, "tts_provider", spec, voice=agent.tts_voice)
            ),
            *(
                n
                for spec in STAGES["reply"]
                for n in _replaced(agent, "reply_provider", spec, model=agent.reply_model)
            ),
        ]
    else:
        notes = [
            n
            for spec in providers
            if not spec.stages
            for n in _replaced(agent, "provider", spec, model=agent.model, voice=agent.voice)
        ]
    if not notes:
        return ""
    return format_html(
        '<ul class="va-notes va-replaced">{}</ul>',
        format_html_join("", '<li data-controller="{}" data-when="{}">{}</li>', notes),
    )


def _replaced(agent, controller: str, spec, model: str = "", voice: str = ""):
    """``(controller, service id, note)`` per replaced name: the agent's own names when
    ``controller`` chooses ``spec``, else the configured defaults."""
    if getattr(agent, controller) != spec.id:
        model = voice = ""
    return [(controller, spec.id, note) for note in spec.replacement_notes(model, voice)]
