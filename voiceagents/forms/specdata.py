"""A model form for models whose data fields depend on a chosen spec (vendor, carrier)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import escape

from ..datafields import clean_data

#: Class of every per-spec fieldset; ``spec-data-<spec id>`` names its spec.
SECTION_CLASS = "spec-data"


class SpecDataForm(forms.ModelForm):
    """Shows each spec's data fields as form fields and stores the chosen spec's into the JSON.

    For a model with ``SpecDataModelMixin``. The form field of a spec's ``DataField`` is named
    ``<spec id>__<key>``; every registered spec's fields are on the form (the admin groups them
    in one fieldset per spec, which ``voiceagents/spec_form.js`` shows only for the chosen
    spec), and only the chosen spec's values are validated and stored.
    """

    #: The line under each spec's section title, so that without JavaScript every section says
    #: when it applies; ``%(name)s`` is the spec's name. Subclasses word it for their model.
    section_note = "Only for %(name)s."

    @classmethod
    def data_fieldsets(cls) -> list[tuple[str, dict]]:
        """One admin fieldset per spec that has data fields, titled and classed by its spec."""
        model = cls._meta.model
        return [
            (
                spec.name,
                {
                    "fields": [f"{spec.id}__{f.key}" for f in model.fields_of(spec)],
                    "classes": [SECTION_CLASS, f"{SECTION_CLASS}-{spec.id}"],
                    # The admin renders descriptions as HTML.
                    "description": escape(cls.section_note % {"name": spec.name}),
                },
            )
            for spec in model.spec_registry
            if model.fields_of(spec)
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        chosen = getattr(instance, instance.spec_field_name)
        stored = getattr(instance, instance.data_field_name) or {}
        # The select whose value spec_form.js follows.
        self.fields[instance.spec_field_name].widget.attrs["data-spec-select"] = SECTION_CLASS
        for spec in instance.spec_registry:
            for data_field in instance.fields_of(spec):
                field = self.fields[f"{spec.id}__{data_field.key}"] = data_field.formfield()
                if spec.id == chosen and data_field.key in stored:
                    field.initial = stored[data_field.key]

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        spec = instance.spec_registry.find(cleaned.get(instance.spec_field_name))
        if spec is not None:
            fields = instance.fields_of(spec)
            values = {f.key: cleaned.get(f"{spec.id}__{f.key}") for f in fields}
            try:
                setattr(instance, instance.data_field_name, clean_data(fields, values))
            except ValidationError as err:
                for key, errors in err.error_dict.items():
                    self.add_error(f"{spec.id}__{key}", errors)
        return cleaned
