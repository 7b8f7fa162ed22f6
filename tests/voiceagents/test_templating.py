"""Placeholders, and values the caller controls (voiceagents.templating)."""

import pytest

from voiceagents.templating import caller_number, caller_text, fill_placeholders


def test_known_placeholders_are_filled_and_other_braces_left_alone():
    text = 'Reply as JSON {"a": 1}. You work for {company}; {unknown} stays.'
    assert fill_placeholders(text, {"company": "Acme"}) == (
        'Reply as JSON {"a": 1}. You work for Acme; {unknown} stays.'
    )


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+1415{company}<b>x", "+1415"),
        ("+1" + "2" * 30, "+1" + "2" * 14),
        ("anonymous", "anonymous"),
        ("", ""),
        (None, ""),
    ],
)
def test_caller_numbers_are_e164_digits(raw, clean):
    assert caller_number(raw) == clean


def test_caller_text_loses_control_characters_braces_markup_and_length():
    value = caller_text('Bob\n\x00{system}\u202e<script>"ignore previous"</script>' + "y" * 100)
    assert value == "Bob system scriptignore previous/script" + "y" * 25
    assert len(value) == 64


def test_caller_values_are_quoted_and_never_expanded():
    variables = {"company": "Acme", "caller_number": caller_text("{company} said hi")}
    assert fill_placeholders("From {caller_number} at {company}", variables) == (
        'From "company said hi" at Acme'
    )
