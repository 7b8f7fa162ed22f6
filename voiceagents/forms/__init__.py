"""Admin forms: write-only secrets, registry-backed choices and per-vendor data fields."""

from .agents import AgentForm
from .credentials import CredentialForm
from .numbers import PhoneNumberForm
from .specdata import SpecDataForm

__all__ = ["AgentForm", "CredentialForm", "PhoneNumberForm", "SpecDataForm"]
