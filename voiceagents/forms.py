"""Admin forms: write-only secrets, registry-backed choices and per-vendor data fields."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .datafields import clean_data
from .handlers import registered_names
from .models import Agent, Credential, PhoneNumber
from .providers import STAGES, providers


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


class SpecDataForm(forms.ModelForm):
    """Shows each spec's data fields as form fields and stores the chosen spec's into the JSON.

    For a model with ``SpecDataModelMixin``. The form field of a spec's ``DataField`` is named
    ``<spec id>__<key>``; every registered spec's fields are on the form (the admin groups them
    in one fieldset per spec), and only the chosen spec's values are validated and stored.
    """

    @classmethod
    def data_fieldsets(cls) -> list[tuple[str, dict]]:
        """One admin fieldset per spec that has data fields."""
        model = cls._meta.model
        return [
            (spec.name, {"fields": [f"{spec.id}__{f.key}" for f in model.fields_of(spec)]})
            for spec in model.spec_registry
            if model.fields_of(spec)
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        chosen = getattr(instance, instance.spec_field_name)
        stored = getattr(instance, instance.data_field_name) or {}
        for spec in instance.spec_registry:
            for data_field in instance.fields_of(spec):
                field = self.fields[f"{spec.id}__{data_field.key}"] = data_field.formfield()
                if spec.id == chosen and data_field.key in stored:
                    field.initial = stored[data_field.key]

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        spec = instance.spec_registry.find(cleaned.get(instance.spec_field_name))
        if spec is not None:
            fields = instance.fields_of(spec)
            values = {f.key: cleaned.get(f"{spec.id}__{f.key}") for f in fields}
            try:
                setattr(instance, instance.data_field_name, clean_data(fields, values))
            except ValidationError as err:
                for key, errors in err.error_dict.items():
                    self.add_error(f"{spec.id}__{key}", errors)
        return cleaned


class CredentialForm(SpecDataForm):
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
        fields = ["vendor", "label", "secret", "is_default", "api_base_url"]

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


class PhoneNumberForm(SpecDataForm):
    class Meta:
        model = PhoneNumber
        fields = ["number", "label", "carrier", "credential", "agent", "enabled"]


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
