"""Agent.clean(): each voice architecture's requirements, with field-specific messages."""

import pytest
from django.core.exceptions import ValidationError

import voiceagents
from voiceagents.models import Agent, Credential


@voiceagents.reply_handler("validation-test-echo")
async def echo(event):
    return event["text"]


def credential(vendor, default=False):
    row = Credential(
        vendor=vendor, label=f"{vendor}-{Credential.objects.count()}", is_default=default
    )
    if vendor == "twilio":
        row.data = {"account_sid": "AC" + "0" * 32}
    row.secret = f"{vendor}-secret-value-1234"
    row.save()
    return row


def errors_of(agent) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        agent.full_clean()
    return {
        field: [str(m) for m in messages] for field, messages in excinfo.value.message_dict.items()
    }


def agent(**fields):
    return Agent(name="Test", slug="test", **fields)


pytestmark = pytest.mark.django_db

#: The vendors' key variables: each test says which ones it sets.
KEY_VARIABLES = ("OPENAI_API_KEY", "ELEVENLABS_API_KEY", "DEEPGRAM_API_KEY")


@pytest.fixture(autouse=True)
def no_key_variables(monkeypatch):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_realtime_without_any_openai_key_saves_and_says_calls_will_fail():
    row = agent()
    row.full_clean()  # configuring an agent before its key is no mistake
    assert row.key_source("provider").kind == "none"
    assert row.missing_keys() == [
        "OpenAI Realtime has no OpenAI key: calls will fail until you add a credential from "
        "OpenAI or set OPENAI_API_KEY."
    ]


def test_realtime_key_from_settings_or_the_environment(voiceagents_settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert agent().key_source("provider").text == "using OPENAI_API_KEY from the environment"
    voiceagents_settings["OPENAI_API_KEY"] = "sk-from-settings"
    assert agent().key_source("provider").text == "using OPENAI_API_KEY from settings.VOICEAGENTS"
    assert agent().missing_keys() == []
    voiceagents_settings["OPENAI_API_KEY"] = ""  # blank in settings: the environment is not read
    assert agent().key_source("provider").kind == "none"


def test_realtime_with_a_chosen_openai_credential_is_valid():
    agent(credential=credential("openai")).full_clean()


def test_realtime_falls_back_to_the_default_openai_credential():
    credential("openai", default=True)
    agent().full_clean()


def test_realtime_refuses_a_credential_of_another_vendor():
    errors = errors_of(agent(credential=credential("deepgram")))
    assert errors["credential"] == [
        "OpenAI Realtime needs a credential from OpenAI, not from Deepgram."
    ]


def test_convai_without_an_elevenlabs_key_warns_about_elevenlabs_only():
    credential("openai", default=True)  # irrelevant for ConvAI
    row = agent(provider="elevenlabs_convai")
    row.full_clean()
    assert row.missing_keys() == [
        "ElevenLabs Conversational AI has no ElevenLabs key: calls will fail until you add a "
        "credential from ElevenLabs or set ELEVENLABS_API_KEY."
    ]


def test_pipeline_without_stt_tts_or_reply_handler_names_each_field():
    errors = errors_of(agent(provider="pipeline"))
    assert "speech-to-text provider" in errors["stt_provider"][0]
    assert "text-to-speech provider" in errors["tts_provider"][0]
    assert "reply handler" in errors["reply_handler"][0]


def test_pipeline_falls_back_to_account_deepgram_and_elevenlabs_credentials():
    credential("deepgram")
    credential("elevenlabs")
    pipeline = agent(
        provider="pipeline",
        stt_provider="deepgram",
        tts_provider="elevenlabs",
        reply_handler="validation-test-echo",
    )
    pipeline.full_clean()
    assert pipeline.credential_for("stt").vendor == "deepgram"
    assert pipeline.credential_for("tts").vendor == "elevenlabs"


def test_pipeline_without_any_deepgram_key_warns_about_the_speech_to_text_stage():
    credential("elevenlabs")
    row = agent(
        provider="pipeline",
        stt_provider="deepgram",
        tts_provider="elevenlabs",
        reply_handler="validation-test-echo",
    )
    row.full_clean()
    assert [role for role, _spec in row.key_roles()] == ["stt", "tts"]  # a handler needs no key
    assert row.missing_keys() == [
        "Deepgram (streaming) has no Deepgram key: calls will fail until you add a credential "
        "from Deepgram or set DEEPGRAM_API_KEY."
    ]


def test_whisper_uses_an_openai_credential():
    openai = credential("openai")
    credential("elevenlabs")
    pipeline = agent(
        provider="pipeline",
        stt_provider="whisper",
        tts_provider="elevenlabs",
        credential=openai,
        reply_handler="validation-test-echo",
    )
    pipeline.full_clean()
    assert pipeline.credential_for("stt") == openai


def test_pipeline_stt_credential_of_wrong_vendor_is_refused():
    credential("elevenlabs")
    errors = errors_of(
        agent(
            provider="pipeline",
            stt_provider="deepgram",
            stt_credential=credential("openai"),
            tts_provider="elevenlabs",
            reply_handler="validation-test-echo",
        )
    )
    assert "needs a credential from Deepgram, not from OpenAI" in errors["stt_credential"][0]


def test_unknown_reply_handler_lists_registered_names():
    credential("deepgram")
    credential("elevenlabs")
    errors = errors_of(
        agent(
            provider="pipeline",
            stt_provider="deepgram",
            tts_provider="elevenlabs",
            reply_handler="nope",
        )
    )
    assert "'nope'" in errors["reply_handler"][0]
    assert "validation-test-echo" in errors["reply_handler"][0]


def test_llm_prompt_reply_uses_an_openai_key(monkeypatch):
    credential("deepgram")
    credential("elevenlabs")
    row = agent(
        provider="pipeline",
        stt_provider="deepgram",
        tts_provider="elevenlabs",
        reply_prompt="Be kind.",
    )
    row.full_clean()
    assert [m.split(" has ")[0] for m in row.missing_keys()] == ["OpenAI Chat Completions"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert row.missing_keys() == []
    assert row.key_source("reply").text == "using OPENAI_API_KEY from the environment"


def test_handler_and_prompt_together_are_refused():
    credential("deepgram")
    credential("elevenlabs")
    errors = errors_of(
        agent(
            provider="pipeline",
            stt_provider="deepgram",
            tts_provider="elevenlabs",
            reply_handler="validation-test-echo",
            reply_prompt="Be kind.",
        )
    )
    assert "not both" in errors["reply_handler"][0]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"turn_detection": "semantic_vad"}, None),
        ({"turn_detection": "psychic"}, "must be one of"),
        ({"turn_detecton": "server_vad"}, "Unknown option 'turn_detecton'"),
        ({"audio_format": 5}, "must be a string"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_provider_options_are_validated_per_provider(options, fragment):
    row = agent(credential=credential("openai"), provider_options=options)
    if fragment is None:
        row.full_clean()
    else:
        assert any(fragment in m for m in errors_of(row)["provider_options"])


def test_options_of_another_provider_are_refused():
    row = agent(credential=credential("openai"), provider_options={"vad": "silero"})
    assert "Unknown option 'vad'" in errors_of(row)["provider_options"][0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("language", "english please"),
        ("transfer_allowlist", ["+1 415 555"]),
        ("variables", {"bad name": "x"}),
        ("variables", ["not", "a", "dict"]),
    ],
)
def test_field_level_validation(field, value):
    row = agent(credential=credential("openai"), **{field: value})
    assert field in errors_of(row)


def test_variables_fill_prompt_and_first_message_but_leave_other_braces():
    row = agent(
        system_prompt='You work for {company}. Reply as JSON like {"ok": true}. {unknown} stays.',
        first_message="Hi, this is {company}!",
        variables={"company": "Acme"},
    )
    assert (
        row.rendered_system_prompt()
        == 'You work for Acme. Reply as JSON like {"ok": true}. {unknown} stays.'
    )
    assert row.rendered_first_message() == "Hi, this is Acme!"
    assert row.rendered_first_message({"company": "Override"}) == "Hi, this is Override!"


def test_voice_and_model_defaults_follow_the_seed_with_current_names():
    assert agent().effective_voice() == "alloy"
    # The seed's default model is retired: a new agent gets its current equivalent.
    assert agent().effective_model() == "gpt-realtime-mini"
    assert agent(provider="elevenlabs_convai").effective_voice() == "rachel"
    assert agent(tts_provider="openai_tts").effective_tts_voice() == "alloy"
    assert agent(tts_provider="elevenlabs").effective_tts_voice() == "rachel"


def test_seed_names_realtime_no_longer_takes_are_kept_and_replaced_at_call_time(
    voiceagents_settings,
):
    seed = agent(model="gpt-4o-mini-realtime-preview", voice="nova")
    seed.clean_fields()  # still accepted
    assert seed.spec.voice_error(seed.voice) is None
    assert (seed.effective_model(), seed.effective_voice()) == ("gpt-realtime-mini", "marin")
    assert {agent(voice=v).effective_voice() for v in ("fable", "onyx")} == {"ballad", "cedar"}
    assert [str(note) for note in seed.spec.replacement_notes(seed.model, seed.voice)] == [
        "OpenAI Realtime no longer takes the model “gpt-4o-mini-realtime-preview”: calls use "
        "“gpt-realtime-mini”.",
        "OpenAI Realtime no longer takes the voice “nova”: calls use “marin”.",
    ]
    assert agent(voice="marin").spec.replacement_notes("", "marin") == []
    # A retired name configured by setting is replaced, and noted, the same way.
    voiceagents_settings["OPENAI_REALTIME_MODEL"] = "gpt-4o-realtime-preview"
    assert agent().effective_model() == "gpt-realtime"
    assert len(agent().spec.replacement_notes()) == 1
    # The pipeline's OpenAI TTS stage does take these voices: nothing is replaced there.
    assert agent(tts_provider="openai_tts", tts_voice="nova").effective_tts_voice() == "nova"
    assert agent(tts_provider="openai_tts").effective_tts_voice() == "alloy"
    assert agent(tts_provider="elevenlabs").effective_tts_voice() == "rachel"


def test_phone_number_needs_e164_and_a_matching_carrier_credential():
    from voiceagents.models import PhoneNumber

    number = PhoneNumber(number="4155550100", carrier="twilio", credential=credential("telnyx"))
    with pytest.raises(ValidationError) as excinfo:
        number.full_clean()
    assert {"number", "credential"} <= set(excinfo.value.message_dict)


def test_telnyx_public_keys_must_be_ed25519_keys_one_per_line():
    import base64

    good = base64.b64encode(b"k" * 32).decode()
    row = Credential(vendor="telnyx", label="t", data={"webhook_public_key": f"{good}\nnot-a-key"})
    row.secret = "KEY0123456789"
    with pytest.raises(ValidationError) as excinfo:
        row.full_clean()
    assert (
        "Webhook public key: Each line must be a base64 Ed25519"
        in excinfo.value.message_dict["data"][0]
    )
    row.data = {"webhook_public_key": f"{good}\n{good}"}
    row.full_clean()


def test_an_unknown_reply_handler_is_refused_with_the_registered_names():
    credential("deepgram")
    credential("elevenlabs")
    errors = errors_of(
        agent(
            provider="pipeline",
            stt_provider="deepgram",
            tts_provider="elevenlabs",
            reply_handler="no-such-handler",
        )
    )
    assert list(errors) == ["reply_handler"]
    assert "no-such-handler" in errors["reply_handler"][0]
    assert "validation-test-echo" in errors["reply_handler"][0]  # a registered one is listed
