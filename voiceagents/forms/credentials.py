"""The credential form: a write-only secret and the vendor's data fields."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ..models import Credential
from .specdata import SpecDataForm


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
