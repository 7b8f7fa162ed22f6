"""Admin forms: write-only secrets and registry-backed choices."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .handlers import registered_names
from .models import Agent, Credential
from .providers import providers


class DatalistTextInput(forms.TextInput):
    """A text input that suggests known values but accepts anything (vendor lists change)."""

    template_name = "voiceagents/widgets/datalist.html"

    def __init__(self, suggestions=(), attrs=None):
        super().__init__(attrs)
        self.suggestions = list(suggestions)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        list_id = f"{context['widget']['attrs'].get('id', name)}_suggestions"
        context["widget"]["attrs"]["list"] = list_id
        context["widget"]["datalist_id"] = list_id
        context["widget"]["suggestions"] = self.suggestions
        return context


class CredentialForm(forms.ModelForm):
    secret = forms.CharField(
        label=_("secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "The API key or auth token. Write-only: it is encrypted at rest and never shown "
            "again. Leave blank to keep the current secret."
        ),
    )

    class Meta:
        model = Credential
        fields = [
            "vendor",
            "label",
            "secret",
            "is_default",
            "account_sid",
            "connection_id",
            "webhook_public_key",
            "api_base_url",
        ]

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("secret") and not self.instance.has_secret:
            self.add_error("secret", _("Enter the secret (API key or auth token)."))
        return cleaned

    def save(self, commit=True):
        secret = self.cleaned_data.get("secret")
        if secret:
            self.instance.secret = secret
        return super().save(commit=commit)


def _suggestions(attribute: str) -> list[str]:
    values: list[str] = []
    for spec in providers:
        for value in getattr(spec, attribute):
            if value not in values:
                values.append(value)
    return values


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
            "system_prompt",
            "first_message",
            "variables",
            "language",
            "model",
            "voice",
            "openai_credential",
            "elevenlabs_credential",
            "stt_provider",
            "stt_credential",
            "stt_language",
            "tts_provider",
            "tts_credential",
            "tts_voice",
            "reply_handler",
            "reply_prompt",
            "reply_model",
            "reply_credential",
            "provider_options",
            "record_calls",
            "max_call_duration",
            "transfer_allowlist",
        ]
        widgets = {
            "model": DatalistTextInput(_suggestions("suggested_models")),
            "voice": DatalistTextInput(_suggestions("suggested_voices")),
            "tts_voice": DatalistTextInput(_suggestions("suggested_voices")),
            "reply_model": DatalistTextInput(["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]),
            "system_prompt": forms.Textarea(attrs={"rows": 6}),
            "first_message": forms.Textarea(attrs={"rows": 2}),
            "reply_prompt": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = registered_names()
        current = self.instance.reply_handler if self.instance else ""
        if current and current not in names:
            names.append(current)
        self.fields["reply_handler"].choices = [("", _("— use the LLM prompt —"))] + [
            (name, name) for name in names
        ]
