"""Admin of provider and carrier credentials."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ..forms import CredentialForm
from ..models import Credential
from ..vendors import vendors
from .common import SpecDataAdmin, _spec_list


@admin.register(Credential)
class CredentialAdmin(SpecDataAdmin):
    form = CredentialForm
    list_display = ["label", "vendor", "is_default", "updated_at"]
    list_filter = ["vendor", "is_default"]
    # ``data`` holds the vendor's account identifiers (Twilio account SID, Telnyx connection ID).
    search_fields = ["label", "data"]
    readonly_fields = ["secret_hint_display", "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        secrets = _spec_list((v.name, v.secret_help) for v in vendors if v.secret_help)
        return [
            (
                None,
                {
                    "fields": ["vendor", "label", "secret", "secret_hint_display", "is_default"],
                    "description": secrets,
                },
            ),
            *self.form.data_fieldsets(),
            (_("Advanced"), {"fields": ["api_base_url", "created_at", "updated_at"]}),
        ]

    @admin.display(description=_("current secret"))
    def secret_hint_display(self, obj):
        return obj.secret_hint() if obj and obj.pk else "—"
