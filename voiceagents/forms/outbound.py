"""The admin's "Call a number" form: who to call, from which of the agent's numbers, and what
the agent starts with."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from ..outbound import OutboundCallError, caller_numbers, normalise_number
from ..validators import validate_variables


class OutboundCallForm(forms.Form):
    to = forms.CharField(
        label=_("Number to call"),
        max_length=40,
        help_text=_("In international format, e.g. +14155550100."),
    )
    from_number = forms.ModelChoiceField(
        label=_("Call from"),
        queryset=None,
        empty_label=None,
        help_text=_("One of this agent's enabled numbers; its carrier places the call."),
    )
    first_message = forms.CharField(
        label=_("First message"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Blank: the agent's own first message. {placeholders} are filled."),
    )
    variables = forms.JSONField(
        label=_("Variables"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_('For this call, over the agent\'s: {"name": "Ada"}.'),
    )

    def __init__(self, agent, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent = agent
        numbers = caller_numbers(agent).order_by("pk")
        self.fields["from_number"].queryset = numbers
        self.fields["from_number"].label_from_instance = lambda n: f"{n.number} ({n.carrier})"

    def clean_to(self):
        try:
            return normalise_number(self.cleaned_data["to"])
        except OutboundCallError as err:
            raise ValidationError(str(err)) from err

    def clean_first_message(self):
        return self.cleaned_data.get("first_message") or None

    def clean_variables(self):
        value = self.cleaned_data.get("variables") or {}
        validate_variables(value)
        return value
