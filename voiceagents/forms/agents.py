"""The agent form: each service's models and voices as choices, where its keys come from, and
the fields of the other voice architectures left alone."""

from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..handlers import registered_names
from ..models import Agent
from ..models.agents import MODE_FIELDS, blank_credential_source, mode_fields
from ..providers import STAGES, providers
from ..tools import registered_tool_names
from ..vendors import vendors
from .widgets import ServiceChoiceSelect, ServiceValues

#: Field → (the field choosing its service, the registry of services, 'model' or 'voice',
#: the "Other…" label). The groups are read per form: entries registered later are offered too.
SERVICE_FIELDS = {
    "model": ("provider", providers, "model", _("Another model name…")),
    "voice": ("provider", providers, "voice", _("Another voice ID or name…")),
    "tts_voice": ("tts_provider", STAGES["tts"], "voice", _("Another voice ID or name…")),
    "reply_model": ("reply_provider", STAGES["reply"], "model", _("Another model name…")),
}
#: Credential field → the field choosing its service (the voice architecture or a stage).
CREDENTIAL_FIELDS = {
    "credential": "provider",
    "stt_credential": "stt_provider",
    "tts_credential": "tts_provider",
    "reply_credential": "reply_provider",
}


def _service_values(registry, kind: str) -> list[ServiceValues]:
    """One group per service that chooses a ``kind``; a voice architecture made of pipeline
    stages has no model or voice of its own."""
    return [
        ServiceValues(
            key=spec.id,
            name=spec.name,
            values=tuple(getattr(spec, f"suggested_{kind}s")),
            default=spec.configured(kind),
            other=getattr(spec, f"custom_{kind}s"),
        )
        for spec in registry
        if not getattr(spec, "stages", ())
    ]


def _key_note(spec, stage: bool) -> str:
    """Where ``spec``'s key comes from when its credential field is left blank."""
    if not spec.vendor:
        return _("needs no key")
    source = blank_credential_source(spec.vendor).text
    if not stage:
        return _("when blank, %(source)s") % {"source": source}
    vendor = vendors.get(spec.vendor).name if spec.vendor in vendors else spec.vendor
    return _("when blank, the credential above if it is from %(vendor)s, else %(source)s") % {
        "vendor": vendor,
        "source": source,
    }


def _key_notes(field: str, controller: str) -> str:
    """Where each service's key comes from when ``field`` is left blank."""
    registry = providers if controller == "provider" else STAGES[controller.split("_")[0]]
    stage = field != "credential"
    return _notes(
        controller,
        ((spec, f"{_key_note(spec, stage)}.") for spec in registry if spec.vendor or stage),
    )


def _notes(controller: str, notes) -> str:
    """A line per ``(spec, text)``, under the spec's name. The page's script shows the line of
    the service the ``controller`` field chooses; without it every line shows."""
    return format_html(
        '<ul class="va-notes">{}</ul>',
        format_html_join(
            "",
            '<li data-controller="{}" data-when="{}"><strong>{}</strong>: {}</li>',
            ((controller, spec.id, spec.name, text) for spec, text in notes if text),
        ),
    )


class AgentForm(forms.ModelForm):
    reply_handler = forms.ChoiceField(
        label=_("Reply handler"),
        required=False,
        help_text=Agent._meta.get_field("reply_handler").help_text,
    )

    class Meta:
        model = Agent
        fields = [
            "name",
            "slug",
            "enabled",
            "provider",
            "credential",
            "system_prompt",
            "first_message",
            "variables",
            "language",
            "model",
            "voice",
            "stt_provider",
            "stt_credential",
            "stt_language",
            "tts_provider",
            "tts_credential",
            "tts_voice",
            "reply_handler",
            "reply_prompt",
            "reply_provider",
            "reply_model",
            "reply_credential",
            "provider_options",
            "record_calls",
            "max_call_duration",
            "transfer_allowlist",
            "tools",
            "answering_machine_detection",
            "machine_action",
            "voicemail_message",
            "remote_agent_id",
        ]
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 5}),
            "first_message": forms.Textarea(attrs={"rows": 2}),
            "reply_prompt": forms.Textarea(attrs={"rows": 3}),
            "variables": forms.Textarea(attrs={"rows": 2}),
            "transfer_allowlist": forms.Textarea(attrs={"rows": 2}),
            "voicemail_message": forms.Textarea(attrs={"rows": 2}),
            "provider_options": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Help texts first: a bound field copies its help text when first built.
        provider = self.fields["provider"]
        provider.help_text = format_html(
            "{}{}",
            provider.help_text,
            _notes("provider", ((spec, spec.description) for spec in providers)),
        )
        for name, controller in CREDENTIAL_FIELDS.items():
            field = self.fields[name]
            # A stage's notes say all its help would (the credential above, else...).
            shown = field.help_text if name == "credential" else ""
            field.help_text = format_html("{}{}", shown, _key_notes(name, controller))
        for name, (controller, registry, kind, other_label) in SERVICE_FIELDS.items():
            field = self.fields[name]
            field.widget = ServiceChoiceSelect(
                _service_values(registry, kind), controller, other_label, field.widget.attrs
            )
            field.widget.selected = self[controller].value() or ""
        names = registered_names()
        current = self.instance.reply_handler if self.instance else ""
        if current and current not in names:
            names.append(current)
        self.fields["reply_handler"].choices = [("", _("— use the LLM prompt —"))] + [
            (name, name) for name in names
        ]
        self._tools_field()

    def _tools_field(self) -> None:
        """The registered tools as checkboxes (a name no longer registered stays listed, so that
        the agent's validation can say what is wrong with it)."""
        names = registered_tool_names()
        current = list(self.instance.tools or ()) if self.instance else []
        names += [name for name in current if name not in names]
        model_field = self.fields["tools"]
        self.fields["tools"] = forms.MultipleChoiceField(
            label=model_field.label,
            choices=[(name, name) for name in names],
            required=False,
            widget=forms.CheckboxSelectMultiple,
            help_text=model_field.help_text
            if names
            else _(
                "No tools are registered: decorate a function with @voiceagents.tool (or list "
                "it in VOICEAGENTS['TOOLS']) and it appears here."
            ),
        )

    def clean(self):
        """The fields of other voice architectures are kept as they were, never refused: their
        section is hidden while another architecture is chosen."""
        cleaned = super().clean()
        spec = providers.find(cleaned.get("provider"))
        if spec is not None:
            for name in MODE_FIELDS - mode_fields(spec):
                if self._errors and name in self._errors:
                    del self._errors[name]
                    cleaned[name] = getattr(self.instance, name)
        return cleaned
