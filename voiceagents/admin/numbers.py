"""Admin of phone numbers: which carrier delivers a number's calls, and to which agent."""

from __future__ import annotations

from django.contrib import admin

from ..forms import PhoneNumberForm
from ..models import PhoneNumber
from .common import SpecDataAdmin


@admin.register(PhoneNumber)
class PhoneNumberAdmin(SpecDataAdmin):
    form = PhoneNumberForm
    list_display = ["number", "label", "carrier", "agent", "enabled"]
    list_filter = ["carrier", "enabled", "agent"]
    search_fields = ["number", "label"]
    list_select_related = ["agent"]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["number", "label", "carrier", "credential", "agent", "enabled"]}),
            *self.form.data_fieldsets(),
        ]
