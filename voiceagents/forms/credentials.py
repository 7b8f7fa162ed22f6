"""The credential form: a write-only secret checked against its vendor, and the vendor's data fields.

A secret typed into a form that comes back with errors (a mistyped account SID, say) is neither
lost nor shown: it travels in a hidden field as a Fernet token under the credentials key, and the
password input stays empty. The token carries a prefix that stored secrets lack, so a stored
``encrypted_secret`` cannot be posted in its place, and expires after ``KEPT_SECRET_TTL``.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .. import crypto
from ..models import Credential
from ..vendors import vendors
from .specdata import SpecDataForm

KEPT_SECRET_PREFIX = b"voiceagents:typed-secret:"
#: Seconds a kept secret stays usable: ample to fix a field, short enough to go stale quickly.
KEPT_SECRET_TTL = 3600


def keep_secret(secret: str) -> str:
    """A token carrying ``secret`` through a re-displayed form."""
    return crypto.fernet().encrypt(KEPT_SECRET_PREFIX + secret.encode("utf-8")).decode("ascii")


def kept_secret(token: str) -> str:
    """The secret in a ``keep_secret`` token; '' for a token that is not one, or expired."""
    if not token:
        return ""
    try:
        raw = crypto.fernet().decrypt(token.encode("ascii"), ttl=KEPT_SECRET_TTL)
    except (InvalidToken, UnicodeEncodeError):
        return ""
    if not raw.startswith(KEPT_SECRET_PREFIX):
        return ""
    return raw[len(KEPT_SECRET_PREFIX) :].decode("utf-8")


class CredentialForm(SpecDataForm):
    section_note = _("Only for %(name)s credentials.")

    secret = forms.CharField(
        label=_("Secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "The API key or auth token. Write-only: it is encrypted at rest and never shown "
            "again. Leave blank to keep the current secret."
        ),
    )
    kept_secret = forms.CharField(required=False, widget=forms.HiddenInput)

    KEPT_HELP = _(
        "Your secret is kept (encrypted, never shown): leave this blank to keep it, or type "
        "another one."
    )

    class Meta:
        model = Credential
        fields = ["vendor", "label", "secret", "is_default", "api_base_url"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: The new secret to save: typed now, or kept from the last try ('' keeps the stored one).
        self.new_secret = ""
        #: The vendor's caution about the new secret, for the admin to show after saving.
        self.secret_warning = ""

    def clean(self):
        cleaned = super().clean()
        token = cleaned.get("kept_secret") or ""
        secret = cleaned.get("secret") or kept_secret(token)
        spec = vendors.find(cleaned.get("vendor"))
        if not secret:
            if token:
                self.add_error("secret", _("The secret you typed earlier expired: enter it again."))
            elif not self.instance.has_secret:
                self.add_error("secret", _("Enter the secret (API key or auth token)."))
            return cleaned
        for validator in spec.secret_validators if spec else ():
            try:
                validator(secret)
            except ValidationError as err:
                self.add_error("secret", err)
                return cleaned
        self.new_secret = secret
        if spec and spec.secret_warning:
            self.secret_warning = spec.secret_warning(secret, cleaned.get("api_base_url") or "")
        return cleaned

    def full_clean(self):
        super().full_clean()
        if not (self.is_bound and self._errors):
            return
        # A refused secret is not kept either: what is kept is always what the page says.
        self._set_kept_secret(keep_secret(self.new_secret) if self.new_secret else "")
        if self.new_secret:
            self._say_secret_is_kept()

    def _set_kept_secret(self, token: str) -> None:
        data = self.data.copy()
        data[self.add_prefix("kept_secret")] = token
        self.data = data

    def _say_secret_is_kept(self) -> None:
        field = self.fields["secret"]
        field.help_text = self.KEPT_HELP
        field.widget.attrs["placeholder"] = _("kept: leave blank")
        # The bound field was made (and copied the help text) while cleaning.
        self["secret"].help_text = self.KEPT_HELP

    def save(self, commit=True):
        if self.new_secret:
            self.instance.secret = self.new_secret
        return super().save(commit=commit)
