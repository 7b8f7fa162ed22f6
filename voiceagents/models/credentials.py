"""Credentials: one vendor account's secret, encrypted at rest, and its vendor-specific data."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .. import crypto
from ..datafields import SpecDataModelMixin
from ..validators import validate_api_base_url
from ..vendors import vendor_choices, vendors

#: Secrets shorter than this show no characters at all in the admin hint.
MIN_SECRET_LEN_FOR_HINT = 12


class CredentialQuerySet(models.QuerySet):
    def default_for(self, vendor: str) -> Credential | None:
        """The account's credential for ``vendor``: the one marked default, else the only one."""
        candidates = list(self.filter(vendor=vendor).order_by("-is_default", "pk")[:2])
        if not candidates:
            return None
        if candidates[0].is_default or len(candidates) == 1:
            return candidates[0]
        return None


class Credential(SpecDataModelMixin, models.Model):
    """An API key or auth token of one vendor account, encrypted at rest."""

    data_field_name = "data"
    spec_field_name = "vendor"
    spec_registry = vendors
    spec_fields_attr = "data_fields"

    vendor = models.CharField(_("Vendor"), max_length=20, choices=vendor_choices)
    label = models.CharField(
        _("Label"), max_length=100, help_text=_("Your name for it, e.g. 'Production OpenAI key'.")
    )
    encrypted_secret = models.TextField(
        _("Encrypted secret"),
        editable=False,
        help_text=_("Fernet token; the clear secret is never stored."),
    )
    is_default = models.BooleanField(
        _("Default"),
        default=False,
        help_text=_(
            "The vendor's default credential: used by agents that choose no credential of this "
            "vendor (e.g. the pipeline's Deepgram and ElevenLabs keys). At most one per vendor."
        ),
    )
    data = models.JSONField(
        _("Vendor data"),
        default=dict,
        blank=True,
        help_text=_(
            "The vendor's own account fields (e.g. a Twilio account SID), validated by the "
            "vendor's spec."
        ),
    )
    api_base_url = models.CharField(
        _("API base URL"),
        max_length=300,
        blank=True,
        validators=[validate_api_base_url],
        help_text=_(
            "Leave blank for the vendor's public API. Set it for a proxy, a regional endpoint or "
            "a self-hosted gateway, e.g. 'https://eu.api.example.com'. Calls and “Test "
            "connection” both use it."
        ),
    )
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated"), auto_now=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")
        ordering = ["vendor", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["vendor"],
                condition=Q(is_default=True),
                name="voiceagents_one_default_credential_per_vendor",
            )
        ]

    def __str__(self):
        return f"{self.get_vendor_display()}: {self.label}"

    @property
    def secret(self) -> str:
        """The clear secret; decrypted on every access, never cached on the instance."""
        if not self.encrypted_secret:
            return ""
        return crypto.decrypt(self.encrypted_secret)

    @secret.setter
    def secret(self, value: str) -> None:
        self.encrypted_secret = crypto.encrypt(value) if value else ""

    @property
    def has_secret(self) -> bool:
        return bool(self.encrypted_secret)

    def secret_hint(self) -> str:
        """A masked hint: at most the last four characters, none for short secrets."""
        try:
            value = self.secret
        except Exception:  # noqa: BLE001 - a hint must never break an admin page
            return "•••• (cannot be decrypted with the configured keys)"
        if not value:
            return ""
        if len(value) < MIN_SECRET_LEN_FOR_HINT:
            return "••••"
        return "••••" + value[-4:]
