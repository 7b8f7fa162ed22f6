"""Vendor-specific fields stored as validated JSON (``Credential.data``, ``PhoneNumber.carrier_data``).

A vendor or carrier spec declares its extra fields as ``DataField`` entries (a Twilio account SID,
a Telnyx webhook key, a Telnyx number's codec). The model validates its JSON against them with
``clean_data`` and the admin renders one form field per entry, so a new vendor needs no column and
no migration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .registry import Registry


@dataclass(frozen=True)
class DataField:
    """One vendor-specific text value: its JSON key, admin label, help and validation."""

    #: Key in the JSON object, snake_case (``account_sid``).
    key: str
    label: str
    help_text: str = ""
    required: bool = False
    #: Allowed values as ``(value, label)`` pairs; empty means free text.
    choices: tuple[tuple[str, str], ...] = ()
    #: Stored when the value is left blank.
    default: str = ""
    #: Django validators run on a non-blank value.
    validators: tuple[Callable[[str], None], ...] = ()
    #: Rendered as a text area (one value per line, e.g. keys during a rotation).
    multiline: bool = False

    def clean(self, value: Any) -> str:
        """The stored form of ``value``; raises ValidationError with a message for people."""
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValidationError(_("must be text"), code="invalid")
        value = value.strip() or self.default
        if not value:
            if self.required:
                raise ValidationError(_("is required"), code="required")
            return ""
        if self.choices and value not in dict(self.choices):
            raise ValidationError(
                _("must be one of %(values)s"),
                params={"values": ", ".join(v for v, _label in self.choices)},
                code="invalid_choice",
            )
        for validator in self.validators:
            validator(value)
        return value

    def formfield(self) -> forms.Field:
        """An admin form field; never required there (only the chosen vendor's fields count)."""
        options = {"label": self.label, "help_text": self.help_text, "required": False}
        if self.choices:
            return forms.ChoiceField(choices=self.choices, initial=self.default, **options)
        # The admin's classes for model text fields: wide enough for a whole SID or key.
        if self.multiline:
            widget = forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})
        else:
            widget = forms.TextInput(attrs={"class": "vTextField"})
        return forms.CharField(widget=widget, initial=self.default, **options)


def clean_data(fields: Sequence[DataField], data: Any) -> dict[str, str]:
    """``data`` checked against ``fields``: known keys only, each cleaned; blank values dropped.

    Raises ValidationError whose ``error_dict`` maps each bad key to its messages, so that forms
    can put them under the matching field.
    """
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        raise ValidationError(_("must be a JSON object"), code="invalid")
    by_key = {field.key: field for field in fields}
    errors: dict[str, list[ValidationError]] = {}
    for key in data:
        if key not in by_key:
            known = ", ".join(by_key) or _("none")
            errors[key] = [
                ValidationError(
                    _("unknown field; this vendor has: %(known)s"),
                    params={"known": known},
                    code="unknown",
                )
            ]
    cleaned: dict[str, str] = {}
    for key, field in by_key.items():
        try:
            value = field.clean(data.get(key))
        except ValidationError as err:
            errors[key] = err.error_list
            continue
        if value:
            cleaned[key] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def data_errors_as_messages(fields: Sequence[DataField], error: ValidationError) -> list[str]:
    """``clean_data``'s errors as "Label: message" lines, for a model's one JSON field."""
    labels = {field.key: field.label for field in fields}
    if not hasattr(error, "error_dict"):
        return list(error.messages)
    return [
        f"{labels.get(key, key)}: {message}"
        for key, errors in error.error_dict.items()
        for message in ValidationError(errors).messages
    ]


class SpecDataModelMixin:
    """Validates a model's JSON data field against the fields its spec declares.

    Subclasses set ``data_field_name`` (the JSONField), ``spec_field_name`` (the field that
    selects the spec, e.g. ``vendor``), ``spec_registry`` (where the specs are) and
    ``spec_fields_attr`` (the spec attribute holding its ``DataField`` tuple). The check runs in
    ``clean_fields`` and is skipped when the JSON field is excluded, as in admin forms that
    validate each value as its own form field (``forms.SpecDataForm``).
    """

    data_field_name = ""
    spec_field_name = ""
    spec_registry: Registry
    spec_fields_attr = ""

    @classmethod
    def fields_of(cls, spec) -> Sequence[DataField]:
        return getattr(spec, cls.spec_fields_attr)

    def spec_data_fields(self) -> Sequence[DataField] | None:
        """The chosen spec's fields; None while the spec is unknown (the choice error says so)."""
        spec = self.spec_registry.find(getattr(self, self.spec_field_name))
        return None if spec is None else self.fields_of(spec)

    def clean_fields(self, exclude=None):
        errors: dict = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as err:
            errors = err.update_error_dict(errors)
        name = self.data_field_name
        fields = self.spec_data_fields()
        if (
            name not in (exclude or ())
            and self.spec_field_name not in errors
            and fields is not None
        ):
            try:
                setattr(self, name, clean_data(fields, getattr(self, name)))
            except ValidationError as err:
                errors[name] = data_errors_as_messages(fields, err)
        if errors:
            raise ValidationError(errors)
