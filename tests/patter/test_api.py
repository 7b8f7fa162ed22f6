import pytest

from patter import Patter


def test_factories_use_the_seed_defaults():
    assert Patter.deepgram(api_key="dg_x").language == "en"
    assert Patter.whisper(api_key="sk-x", language="es").language == "es"
    assert Patter.elevenlabs(api_key="el_x").voice == "rachel"
    assert Patter.openai_tts(api_key="sk-x").voice == "alloy"


def test_keys_are_not_in_reprs():
    assert "dg_secret" not in repr(Patter.deepgram(api_key="dg_secret"))


def test_realtime_is_the_default_with_seed_model_and_voice():
    agent = Patter(openai_key="sk-x").agent(system_prompt="You are a helpful assistant.")
    assert (agent.provider, agent.model, agent.voice) == (
        "openai_realtime",
        "gpt-4o-mini-realtime-preview",
        "alloy",
    )


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
