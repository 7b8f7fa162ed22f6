"""The agent form: registry-backed suggestions and reply handler choices."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ..handlers import registered_names
from ..models import Agent
from ..providers import STAGES, providers
from .widgets import DatalistTextInput


def _suggestions(specs, attribute: str) -> list[str]:
    """The suggested values of every spec, in registry order, once each."""
    return list(dict.fromkeys(value for spec in specs for value in getattr(spec, attribute)))


class AgentForm(forms.ModelForm):
    reply_handler = forms.ChoiceField(
        label=_("reply handler"),
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
            "remote_agent_id",
        ]
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 6}),
            "first_message": forms.Textarea(attrs={"rows": 2}),
            "reply_prompt": forms.Textarea(attrs={"rows": 4}),
        }

    #: Text field → (the registry whose suggestions it offers, spec attribute); read per form,
    #: so entries registered after start-up are offered too.
    SUGGESTIONS = {
        "model": (providers, "suggested_models"),
        "voice": (providers, "suggested_voices"),
        "tts_voice": (STAGES["tts"], "suggested_voices"),
        "reply_model": (STAGES["reply"], "suggested_models"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (specs, attribute) in self.SUGGESTIONS.items():
            if name in self.fields:
                field = self.fields[name]
                field.widget = DatalistTextInput(_suggestions(specs, attribute), field.widget.attrs)
        names = registered_names()
        current = self.instance.reply_handler if self.instance else ""
        if current and current not in names:
            names.append(current)
        self.fields["reply_handler"].choices = [("", _("— use the LLM prompt —"))] + [
            (name, name) for name in names
        ]
