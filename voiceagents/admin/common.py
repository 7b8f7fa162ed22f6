"""What the admin pages share: fieldset descriptions and admins of per-spec data."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join


def _spec_list(pairs) -> str:
    """An HTML list of ``(name, text)`` pairs for a fieldset description (escaped)."""
    return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: {}</li>", pairs))


class SpecDataAdmin(admin.ModelAdmin):
    """Admin of a model with per-spec data; its form generates one fieldset per spec, and
    ``spec_form.js`` shows only the chosen spec's."""

    class Media:
        js = ["voiceagents/spec_form.js"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The model fields only (the change view passes its fieldsets' fields): the form adds
        # the generated per-spec fields itself.
        kwargs["fields"] = self.form.Meta.fields
        return super().get_form(request, obj, change, **kwargs)
