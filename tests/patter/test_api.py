import pytest

from patter import Patter


def test_factories_use_the_seed_defaults():
    assert Patter.deepgram(api_key="dg_x").language == "en"
    assert Patter.whisper(api_key="sk-x", language="es").language == "es"
    assert Patter.elevenlabs(api_key="el_x").voice == "rachel"
    assert Patter.openai_tts(api_key="sk-x").voice == "alloy"


def test_keys_are_not_in_reprs():
    assert "dg_secret" not in repr(Patter.deepgram(api_key="dg_secret"))


def test_realtime_is_the_default_with_a_current_model_and_the_seed_voice():
    agent = Patter(openai_key="sk-x").agent(system_prompt="You are a helpful assistant.")
    assert (agent.provider, agent.model, agent.voice) == (
        "openai_realtime",
        "gpt-realtime-mini",
        "alloy",
    )
    # The seed's own default name is still taken (calls send its current equivalent).
    seed = Patter(openai_key="sk-x").agent("x", model="gpt-4o-mini-realtime-preview", voice="nova")
    assert (seed.model, seed.voice) == ("gpt-4o-mini-realtime-preview", "nova")


def test_realtime_needs_an_openai_key():
    with pytest.raises(ValueError, match="openai_key"):
        Patter().agent(system_prompt="x")


def test_convai_defaults_to_rachel_and_needs_an_elevenlabs_key():
    assert Patter(elevenlabs_key="el").agent("x", provider="elevenlabs_convai").voice == "rachel"
    with pytest.raises(ValueError, match="elevenlabs_key"):
        Patter().agent("x", provider="elevenlabs_convai")


def test_pipeline_falls_back_to_constructor_keys():
    agent = Patter(deepgram_key="dg", elevenlabs_key="el").agent("x", provider="pipeline")
    assert (agent.stt.provider, agent.tts.provider, agent.tts.voice) == (
        "deepgram",
        "elevenlabs",
        "rachel",
    )


def test_pipeline_without_stages_or_keys_names_what_is_missing():
    with pytest.raises(ValueError, match="stt and tts"):
        Patter().agent("x", provider="pipeline")


def test_stage_defaults_are_the_pipeline_registrys():
    from voiceagents.providers.stages import tts_stages

    assert Patter.elevenlabs(api_key="el").voice == tts_stages.get("elevenlabs").default_voice
    assert Patter.elevenlabs(api_key="el", voice="adam").voice == "adam"


async def test_outbound_calls_say_they_are_not_built():
    with pytest.raises(NotImplementedError, match="outbound calls are not supported"):
        await Patter(twilio_sid="AC", twilio_token="t").call(to="+14155550100")


async def test_serving_the_pipeline_needs_on_message():
    phone = Patter(deepgram_key="dg", elevenlabs_key="el")
    with pytest.raises(ValueError, match="needs on_message"):
        await phone.serve(phone.agent("x", provider="pipeline"))


async def test_on_message_is_only_for_the_pipeline():
    phone = Patter(openai_key="sk-x")
    with pytest.raises(ValueError, match="on_message is for provider='pipeline'"):
        await phone.serve(phone.agent("x"), on_message=lambda event: "hi")


@pytest.mark.parametrize(
    "given, public",
    [
        ("abc.ngrok.app", "https://abc.ngrok.app"),
        ("https://abc.ngrok.app/", "https://abc.ngrok.app"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_webhook_url_becomes_the_public_url(given, public):
    from patter.server import public_url

    assert public_url(given) == public
