"""What the admin pages share: admins of per-spec data."""

from __future__ import annotations

from django.contrib import admin


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
