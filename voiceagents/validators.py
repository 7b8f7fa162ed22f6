"""Validators for phone numbers, language tags, template variables and URL overrides."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.utils.translation import gettext_lazy as _

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
#: A pragmatic BCP-47 shape: language, optional script/region/variants ("en", "pt-BR", "zh-Hant-TW").
BCP47_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

validate_e164 = RegexValidator(
    E164_RE,
    _("Enter the number in E.164 format: '+' then country code and number, e.g. +14155550100."),
    code="invalid_e164",
)

validate_bcp47 = RegexValidator(
    BCP47_RE, _("Enter a BCP-47 language tag, e.g. 'en', 'en-US' or 'pt-BR'."), code="invalid_bcp47"
)

#: Provider base URLs may be HTTP(S) (REST APIs) or WS(S) (realtime sockets).
validate_api_base_url = URLValidator(schemes=["http", "https", "ws", "wss"])


def validate_e164_list(value):
    if value in (None, ""):
        return
    if not isinstance(value, list):
        raise ValidationError(
            _('Enter a JSON list of E.164 numbers, e.g. ["+14155550100"].'), code="invalid"
        )
    bad = [v for v in value if not isinstance(v, str) or not E164_RE.match(v)]
    if bad:
        raise ValidationError(
            _("Not E.164 numbers: %(bad)s"),
            params={"bad": ", ".join(map(str, bad))},
            code="invalid",
        )


def validate_variables(value):
    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError(
            _('Enter a JSON object of variables, e.g. {"company": "Acme"}.'), code="invalid"
        )
    for name, val in value.items():
        if not VARIABLE_NAME_RE.match(name):
            raise ValidationError(
                _("Variable name %(name)r must be letters, digits and underscores."),
                params={"name": name},
                code="invalid",
            )
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            raise ValidationError(
                _("Variable %(name)r must be a string or a number."),
                params={"name": name},
                code="invalid",
            )
