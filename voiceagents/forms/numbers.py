"""The phone number form: the carrier's data fields."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..models import PhoneNumber
from .specdata import SpecDataForm


class PhoneNumberForm(SpecDataForm):
    section_note = _("Only for %(name)s numbers.")

    class Meta:
        model = PhoneNumber
        fields = ["number", "label", "carrier", "credential", "agent", "enabled"]
