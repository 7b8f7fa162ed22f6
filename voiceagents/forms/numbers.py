"""The phone number form: the carrier's data fields."""

from __future__ import annotations

from ..models import PhoneNumber
from .specdata import SpecDataForm


class PhoneNumberForm(SpecDataForm):
    class Meta:
        model = PhoneNumber
        fields = ["number", "label", "carrier", "credential", "agent", "enabled"]
