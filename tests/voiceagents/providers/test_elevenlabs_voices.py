"""ElevenLabs voice names → ids, and the agent validation that uses them."""

import pytest
from django.core.exceptions import ValidationError

from voiceagents.models import Agent, Credential
from voiceagents.providers.elevenlabs_voices import known_voice_names, resolve_voice_id

RACHEL = "21m00Tcm4TlvDq8ikWAM"


@pytest.mark.parametrize("name", ["rachel", "Rachel", " RACHEL "])
def test_names_resolve_in_any_case(name):
    assert resolve_voice_id(name) == RACHEL


def test_an_id_passes_through():
    assert resolve_voice_id("AbCdEfGhIjKlMnOpQrSt") == "AbCdEfGhIjKlMnOpQrSt"


@pytest.mark.parametrize("value", ["", "nova", "AbCdEfGhIjKlMnOpQrS", "AbCdEfGhIjKlMnOpQr-t"])
def test_anything_else_is_refused_with_the_known_names(value):
    with pytest.raises(ValueError) as caught:
        resolve_voice_id(value)
    assert "rachel, adam" in str(caught.value)


def test_known_names_start_with_the_classic_premade_voices():
    names = known_voice_names()
    assert names[:2] == ["rachel", "adam"]
    assert len(names) == len(set(names))


# -- Agent.clean() -------------------------------------------------------------------------------


def credential(vendor):
    row = Credential(vendor=vendor, label=f"{vendor}-{Credential.objects.count()}")
    row.secret = f"{vendor}-secret-value-1234"
    row.save()
    return row


def errors_of(agent) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        agent.full_clean()
    return {field: [str(m) for m in msgs] for field, msgs in caught.value.message_dict.items()}


@pytest.mark.django_db
def test_convai_agent_with_an_unknown_voice_names_the_field_and_the_known_names():
    agent = Agent(
        name="T", slug="t", provider="elevenlabs_convai", credential=credential("elevenlabs")
    )
    agent.full_clean()  # blank voice: the default 'rachel'
    agent.voice = "Adam"
    agent.full_clean()
    agent.voice = RACHEL
    agent.full_clean()
    agent.voice = "alloy"
    errors = errors_of(agent)
    assert list(errors) == ["voice"]
    assert "Unknown ElevenLabs voice 'alloy'" in errors["voice"][0]
    assert "rachel" in errors["voice"][0]


@pytest.mark.django_db
def test_pipeline_elevenlabs_tts_voice_is_checked_too():
    credential("elevenlabs")
    credential("deepgram")
    agent = Agent(
        name="T",
        slug="t",
        provider="pipeline",
        stt_provider="deepgram",
        tts_provider="elevenlabs",
        tts_voice="bogus",
        reply_handler="",
        reply_prompt="Be brief.",
        reply_provider="openai_chat",
        reply_credential=credential("openai"),
    )
    errors = errors_of(agent)
    assert list(errors) == ["tts_voice"]
    assert "Unknown ElevenLabs voice 'bogus'" in errors["tts_voice"][0]
    agent.tts_voice = "josh"
    agent.full_clean()


@pytest.mark.django_db
def test_openai_voices_are_not_checked_against_the_elevenlabs_table():
    agent = Agent(name="T", slug="t", voice="marin", credential=credential("openai"))
    agent.full_clean()
