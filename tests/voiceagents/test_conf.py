import pytest

from voiceagents.conf import get_setting
from voiceagents.exceptions import ConfigurationError


def test_explicit_value_wins_over_settings_and_environment(voiceagents_settings, monkeypatch):
    voiceagents_settings["OPENAI_API_KEY"] = "from-settings"
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert get_setting("API_KEY", vendor="openai", value="explicit") == "explicit"


def test_settings_dict_wins_over_environment(voiceagents_settings, monkeypatch):
    voiceagents_settings["OPENAI_API_KEY"] = "from-settings"
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert get_setting("API_KEY", vendor="openai") == "from-settings"


def test_vendor_key_reads_the_vendors_own_environment_variable(monkeypatch):
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-env")
    assert get_setting("API_KEY", vendor="deepgram") == "dg-env"


def test_app_wide_key_reads_prefixed_environment_variable_with_cast(monkeypatch):
    monkeypatch.setenv("VOICEAGENTS_STREAM_TOKEN_TTL", "42")
    assert get_setting("STREAM_TOKEN_TTL", cast=int) == 42


def test_boolean_environment_values_are_parsed(monkeypatch):
    monkeypatch.setenv("VOICEAGENTS_VERIFY_SIGNATURES", "off")
    assert get_setting("VERIFY_SIGNATURES", cast=bool) is False


def test_invalid_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("VOICEAGENTS_STREAM_TOKEN_TTL", "soon")
    with pytest.raises(ConfigurationError, match="VOICEAGENTS_STREAM_TOKEN_TTL"):
        get_setting("STREAM_TOKEN_TTL", cast=int)


def test_app_wide_defaults_apply_when_nothing_is_set(monkeypatch):
    monkeypatch.delenv("VOICEAGENTS_STREAM_TOKEN_TTL", raising=False)
    assert get_setting("STREAM_TOKEN_TTL") == 60


def test_missing_setting_error_names_every_place_looked(monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError) as excinfo:
        get_setting("AUTH_TOKEN", vendor="twilio")
    message = str(excinfo.value)
    assert "VOICEAGENTS['TWILIO_AUTH_TOKEN']" in message
    assert "TWILIO_AUTH_TOKEN environment variable" in message


def test_settings_are_read_at_call_time_not_import(settings):
    settings.VOICEAGENTS = {"PUBLIC_URL": "https://one.example"}
    assert get_setting("PUBLIC_URL") == "https://one.example"
    settings.VOICEAGENTS = {"PUBLIC_URL": "https://two.example"}
    assert get_setting("PUBLIC_URL") == "https://two.example"
