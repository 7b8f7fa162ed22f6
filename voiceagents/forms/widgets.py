"""Form widgets of the admin."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms


@dataclass(frozen=True)
class ServiceValues:
    """The values one service offers in a ``ServiceChoiceSelect``."""

    #: The service's id: the value of the controlling field that selects this group.
    key: str
    name: str
    values: tuple[str, ...]
    #: What blank means for this service ('' when the service decides, e.g. a vendor agent).
    default: str = ""
    #: Whether values beyond ``values`` are taken (the "Other…" box).
    other: bool = True


class ServiceChoiceSelect(forms.Widget):
    """A select of each service's known values, one group per service, and a box for another.

    Another field (the ``controller``: the voice architecture, a pipeline stage) chooses the
    service; the agent form's script shows only its group, and the box only where that service
    takes values of its own. Without the script every group shows, under the service's name.
    The current value stays selectable even when no group lists it.
    """

    template_name = "voiceagents/widgets/service_choice.html"
    OTHER = "__other__"

    def __init__(self, groups=(), controller="", other_label="", attrs=None):
        super().__init__(attrs)
        self.groups: list[ServiceValues] = list(groups)
        self.controller = controller
        self.other_label = other_label
        #: The service chosen when the page is built (the form sets it).
        self.selected = ""

    def other_name(self, name: str) -> str:
        return f"{name}_other"

    def value_from_datadict(self, data, files, name):
        choice = data.get(name, "")
        typed = (data.get(self.other_name(name)) or "").strip()
        # A value typed with "Other…" or with nothing chosen (a page without the script).
        return typed if choice == self.OTHER or (not choice and typed) else choice

    def value_omitted_from_data(self, data, files, name):
        return name not in data and self.other_name(name) not in data

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        value = "" if value is None else str(value)
        chosen = next((g for g in self.groups if g.key == self.selected), None)
        listed = chosen is not None and value in chosen.values
        context["widget"].update(
            controller=self.controller,
            other_name=self.other_name(name),
            other_label=self.other_label,
            other_choice=self.OTHER,
            unlisted=value if value and not listed else "",
            default=chosen.default if chosen else "",
            groups=[
                {
                    "key": group.key,
                    "name": group.name,
                    "default": group.default,
                    "other": group.other,
                    "options": [
                        (v, listed and group is chosen and v == value) for v in group.values
                    ],
                }
                for group in self.groups
            ],
        )
        return context
