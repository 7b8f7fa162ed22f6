import pytest
from django.core.checks import run_checks

from telephony.checks import check_public_url
from voiceagents.checks import (
    check_channel_layer_for_production,
    check_credentials_key,
    check_registries,
    check_reply_handlers,
    check_signature_verification,
)


def ids(messages):
    return [m.id for m in messages]


def test_disabled_signatures_warn_only_outside_debug(settings, voiceagents_settings):
    voiceagents_settings["VERIFY_SIGNATURES"] = False
    settings.DEBUG = False
    assert ids(check_signature_verification(None)) == ["voiceagents.W001"]
    settings.DEBUG = True
    assert check_signature_verification(None) == []


def test_invalid_credentials_key_is_an_error(voiceagents_settings):
    voiceagents_settings["CREDENTIALS_KEY"] = "not-a-fernet-key"
    assert ids(check_credentials_key(None)) == ["voiceagents.E002"]


def test_unimportable_reply_handler_is_an_error(voiceagents_settings):
    voiceagents_settings["REPLY_HANDLERS"] = {"x": "tests.nowhere.func", "y": "os.sep"}
    assert ids(check_reply_handlers(None)) == ["voiceagents.E003", "voiceagents.E003"]


def test_in_memory_channel_layer_warns_on_deploy(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert ids(check_channel_layer_for_production(None)) == ["voiceagents.W002"]


@pytest.mark.parametrize(
    ("public_url", "debug", "expected"),
    [
        (None, True, ["telephony.W001"]),
        ("voice.example.com", True, ["telephony.E001"]),
        ("http://voice.example.com", False, ["telephony.E002"]),
        ("http://127.0.0.1:8000", True, []),
        ("https://voice.example.com", False, []),
    ],
)
def test_public_url_checks(
    settings, voiceagents_settings, monkeypatch, public_url, debug, expected
):
    monkeypatch.delenv("VOICEAGENTS_PUBLIC_URL", raising=False)
    voiceagents_settings["PUBLIC_URL"] = public_url
    settings.DEBUG = debug
    assert ids(check_public_url(None)) == expected


def test_project_passes_its_own_checks():
    assert [m for m in run_checks() if m.is_serious()] == []


def test_invalid_telnyx_public_keys_in_settings_warn(voiceagents_settings, monkeypatch):
    import base64

    from telephony.checks import check_telnyx_public_keys

    monkeypatch.delenv("TELNYX_PUBLIC_KEY", raising=False)
    good = base64.b64encode(bytes(range(32))).decode()
    voiceagents_settings["TELNYX_PUBLIC_KEY"] = [good]
    assert check_telnyx_public_keys(None) == []
    voiceagents_settings["TELNYX_PUBLIC_KEY"] = [good, "not-a-key"]
    assert ids(check_telnyx_public_keys(None)) == ["telephony.W002"]


def test_registry_entries_must_name_registered_vendors_and_importable_runtimes():
    from voiceagents.providers import ProviderSpec, providers

    assert check_registries(None) == []
    stray = ProviderSpec(id="stray", name="Stray", vendor="nobody", runtime="tests.nowhere.Nothing")
    providers.register(stray)
    try:
        messages = check_registries(None)
    finally:
        providers.unregister("stray")
    assert ids(messages) == ["voiceagents.E004", "voiceagents.E005"]
    assert "'nobody'" in messages[0].msg


def test_a_carrier_whose_media_consumer_cannot_be_imported_is_an_error():
    from voiceagents.carriers import CarrierSpec, carriers

    stray = CarrierSpec(id="stray", name="Stray", vendor="twilio", consumer="tests.nowhere.Nothing")
    carriers.register(stray)
    try:
        messages = check_registries(None)
    finally:
        carriers.unregister("stray")
    assert ids(messages) == ["voiceagents.E005"]
