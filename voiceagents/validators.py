"""Validators for phone numbers, language tags, model names, template variables and URL overrides.

Each error has a code of its own: a form field replaces the message of an error whose code it
knows (a JSON field's ``invalid`` becomes "Enter a valid JSON."), so ``invalid`` is never used.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.utils.translation import gettext_lazy as _

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
#: A pragmatic BCP-47 shape: language, optional script/region/variants ("en", "pt-BR", "zh-Hant-TW").
BCP47_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Vendors' model names: letters, digits and ``. _ - : /`` ("gpt-realtime", "ft:gpt-4o:acme:x").
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")

validate_e164 = RegexValidator(
    E164_RE,
    _("Enter the number in E.164 format: '+' then country code and number, e.g. +14155550100."),
    code="invalid_e164",
)

validate_bcp47 = RegexValidator(
    BCP47_RE, _("Enter a BCP-47 language tag, e.g. 'en', 'en-US' or 'pt-BR'."), code="invalid_bcp47"
)

validate_model_name = RegexValidator(
    MODEL_NAME_RE,
    _("Enter a model name without spaces, e.g. 'gpt-realtime-mini' or 'eleven_flash_v2_5'."),
    code="invalid_model_name",
)

#: Provider base URLs may be HTTP(S) (REST APIs) or WS(S) (realtime sockets).
validate_api_base_url = URLValidator(schemes=["http", "https", "ws", "wss"])


def validate_e164_list(value):
    if value in (None, ""):
        return
    if not isinstance(value, list):
        raise ValidationError(
            _('Enter a list of numbers in square brackets, e.g. ["+14155550100"].'),
            code="not_a_list",
        )
    bad = [v for v in value if not isinstance(v, str) or not E164_RE.match(v)]
    if bad:
        raise ValidationError(
            _("Not in E.164 format ('+', country code and number, e.g. +14155550100): %(bad)s"),
            params={"bad": ", ".join(map(str, bad))},
            code="invalid_e164_list",
        )


def validate_variables(value):
    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError(
            _('Enter the variables in curly braces, e.g. {"company": "Acme"}.'),
            code="not_an_object",
        )
    for name, val in value.items():
        if not VARIABLE_NAME_RE.match(name):
            raise ValidationError(
                _(
                    "Variable name %(name)r must be letters, digits and underscores "
                    "(e.g. company_name)."
                ),
                params={"name": name},
                code="invalid_variable_name",
            )
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            raise ValidationError(
                _("Variable %(name)r must be text or a number."),
                params={"name": name},
                code="invalid_variable_value",
            )
