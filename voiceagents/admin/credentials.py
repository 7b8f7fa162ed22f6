"""Admin of provider and carrier credentials."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..connection import check_connection
from ..forms import CredentialForm
from ..forms.specdata import SECTION_CLASS
from ..models import Credential
from ..vendors import vendors
from .common import SpecDataAdmin

#: The submit button that saves the credential, then tests it (credential/submit_line.html).
TEST_BUTTON = "_test_connection"


@admin.register(Credential)
class CredentialAdmin(SpecDataAdmin):
    form = CredentialForm
    list_display = ["label", "vendor", "is_default", "updated_at"]
    list_filter = ["vendor", "is_default"]
    # ``data`` holds the vendor's account identifiers (Twilio account SID, Telnyx connection ID).
    search_fields = ["label", "data"]
    readonly_fields = ["secret_hint_display", "created_at", "updated_at"]
    actions = ["test_connection"]

    def get_fieldsets(self, request, obj=None):
        # One note per vendor; spec_form.js leaves only the chosen vendor's.
        secrets = format_html(
            '<ul data-spec-notes="{}">{}</ul>',
            SECTION_CLASS,
            format_html_join(
                "",
                '<li class="{}-{}">{}: {}</li>',
                ((SECTION_CLASS, v.id, v.name, v.secret_help) for v in vendors if v.secret_help),
            ),
        )
        return [
            (
                None,
                {
                    "fields": [
                        "vendor",
                        "label",
                        "secret",
                        "kept_secret",
                        "secret_hint_display",
                        "is_default",
                    ],
                    "description": secrets,
                },
            ),
            *self.form.data_fieldsets(),
            (_("Advanced"), {"fields": ["api_base_url", "created_at", "updated_at"]}),
        ]

    @admin.display(description=_("Current secret"))
    def secret_hint_display(self, obj):
        return obj.secret_hint() if obj and obj.pk else "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.secret_warning:
            self.message_user(request, form.secret_warning, messages.WARNING)

    # -- "Test connection" ----------------------------------------------------------------------

    @admin.action(description=_("Test connection"), permissions=["change"])
    def test_connection(self, request, queryset):
        """One request to each selected credential's vendor, one message per credential."""
        for credential in queryset:
            self._report_connection(request, credential)

    def _report_connection(self, request, credential) -> None:
        result = check_connection(credential)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"{credential}: {result.message}", level)

    def response_add(self, request, obj, post_url_continue=None):
        if TEST_BUTTON in request.POST:
            return self._test_and_stay(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if TEST_BUTTON in request.POST:
            return self._test_and_stay(request, obj)
        return super().response_change(request, obj)

    def _test_and_stay(self, request, obj):
        """After "Save and test connection": the saved credential's test, on its change page."""
        self.message_user(request, _("The credential “%s” was saved.") % obj, messages.SUCCESS)
        self._report_connection(request, obj)
        opts = self.opts
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[obj.pk],
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(url)
