"""Form widgets of the admin."""

from __future__ import annotations

from django import forms


class DatalistTextInput(forms.TextInput):
    """A text input that suggests known values but accepts anything (vendor lists change)."""

    template_name = "voiceagents/widgets/datalist.html"

    def __init__(self, suggestions=(), attrs=None):
        super().__init__(attrs)
        self.suggestions = list(suggestions)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        list_id = f"{context['widget']['attrs'].get('id', name)}_suggestions"
        context["widget"]["attrs"]["list"] = list_id
        context["widget"]["datalist_id"] = list_id
        context["widget"]["suggestions"] = self.suggestions
        return context
