"""Phone numbers: a number at a carrier, its account credential and the agent that answers it."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..carriers import carrier_choices, carrier_credentials, carriers
from ..datafields import SpecDataModelMixin
from ..validators import validate_e164
from .agents import Agent
from .credentials import Credential


class PhoneNumber(SpecDataModelMixin, models.Model):
    """A number at a carrier, and the agent that answers its inbound calls."""

    data_field_name = "carrier_data"
    spec_field_name = "carrier"
    spec_registry = carriers
    spec_fields_attr = "number_fields"

    number = models.CharField(
        _("Number"),
        max_length=16,
        unique=True,
        validators=[validate_e164],
        help_text=_("E.164 format, e.g. +14155550100."),
    )
    label = models.CharField(_("Label"), max_length=100, blank=True)
    carrier = models.CharField(_("Carrier"), max_length=20, choices=carrier_choices)
    credential = models.ForeignKey(
        Credential,
        verbose_name=_("Carrier credential"),
        on_delete=models.PROTECT,
        related_name="phone_numbers",
        limit_choices_to=carrier_credentials,
        help_text=_("The carrier account this number belongs to."),
    )
    agent = models.ForeignKey(
        Agent,
        verbose_name=_("Inbound agent"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="phone_numbers",
        help_text=_("Answers inbound calls. Blank: callers hear a short apology."),
    )
    enabled = models.BooleanField(_("Enabled"), default=True)
    carrier_data = models.JSONField(
        _("Carrier data"),
        default=dict,
        blank=True,
        help_text=_(
            "The carrier's own per-number settings (e.g. Telnyx's media codec), validated by the "
            "carrier's spec."
        ),
    )
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)

    class Meta:
        verbose_name = _("phone number")
        verbose_name_plural = _("phone numbers")
        ordering = ["number"]

    def __str__(self):
        return f"{self.number} ({self.get_carrier_display()})"

    def clean(self):
        if not self.credential_id or self.carrier not in carriers:
            return
        spec = carriers.get(self.carrier)
        if self.credential.vendor != spec.vendor:
            raise ValidationError(
                {"credential": _("Choose a %(carrier)s credential.") % {"carrier": spec.name}}
            )
