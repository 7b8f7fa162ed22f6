import pytest
from django.conf.urls.static import static
from django.core.checks import run_checks
from django.test import override_settings

from telephony.checks import check_public_url, check_public_url_host_allowed
from voiceagents.checks import (
    check_channel_layer_for_production,
    check_credentials_key,
    check_numeric_settings,
    check_recordings_not_served_publicly,
    check_recordings_outside_project,
    check_registries,
    check_reply_handlers,
    check_signature_verification,
)

# A URLconf that serves MEDIA_URL as the Django docs show for development (static() adds the
# pattern only with DEBUG on); used by @pytest.mark.urls(__name__) below.
with override_settings(DEBUG=True):
    urlpatterns = static("/media/", document_root="/nowhere")


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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONFIG_CACHE_SECONDS", "two"),
        ("CONFIG_CACHE_SECONDS", -1),
        ("CONFIG_CACHE_SECONDS", float("nan")),
        ("MAX_CALLS_PER_PROCESS", "2.5"),
        ("MAX_CALLS_PER_PROCESS", None),
        ("DRAIN_TIMEOUT", True),
        ("STREAM_TOKEN_TTL", [60]),
    ],
)
def test_a_numeric_setting_that_is_not_a_number_is_an_error(voiceagents_settings, name, value):
    voiceagents_settings[name] = value
    messages = check_numeric_settings(None)
    assert ids(messages) == ["voiceagents.E007"]
    assert name in messages[0].msg


@pytest.mark.parametrize(
    ("name", "value"),
    [("CONFIG_CACHE_SECONDS", 0), ("MAX_CALLS_PER_PROCESS", "80"), ("DRAIN_TIMEOUT", 1.5)],
)
def test_numeric_settings_as_the_call_path_reads_them_pass(voiceagents_settings, name, value):
    voiceagents_settings[name] = value
    assert check_numeric_settings(None) == []


def test_a_numeric_environment_variable_that_does_not_parse_is_an_error(monkeypatch):
    monkeypatch.setenv("VOICEAGENTS_MAX_CALLS_PER_PROCESS", "fifty")
    messages = check_numeric_settings(None)
    assert ids(messages) == ["voiceagents.E007"]
    assert "VOICEAGENTS_MAX_CALLS_PER_PROCESS" in messages[0].msg


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


def test_a_carrier_whose_dialer_cannot_be_imported_is_an_error():
    from voiceagents.carriers import CarrierSpec, carriers

    stray = CarrierSpec(id="stray", name="Stray", vendor="twilio", dialer="tests.nowhere.dial")
    carriers.register(stray)
    try:
        messages = check_registries(None)
    finally:
        carriers.unregister("stray")
    assert ids(messages) == ["voiceagents.E005"]
    assert "tests.nowhere.dial" in messages[0].msg


@pytest.mark.parametrize(
    ("public_url", "debug", "allowed_hosts", "expected"),
    [
        (None, False, [], []),
        ("https://voice.example.com", False, ["voice.example.com"], []),
        ("https://voice.example.com:8443", False, ["voice.example.com"], []),
        ("https://VOICE.example.com", False, [".example.com"], []),
        ("https://voice.example.com", False, ["*"], []),
        ("https://voice.example.com", False, ["other.example.com"], ["telephony.E004"]),
        ("https://voice.example.com", False, [], ["telephony.E004"]),
        # DEBUG with an empty ALLOWED_HOSTS lets local names through, nothing else.
        ("https://voice.example.com", True, [], ["telephony.E004"]),
        ("http://localhost:8000", True, [], []),
        ("http://127.0.0.1:8000", True, [], []),
        ("http://[::1]:8000", True, [], []),
        ("http://127.0.0.1:8000", False, [], ["telephony.E004"]),
        ("voice.example.com", False, [], []),  # not a URL: telephony.E001's business
    ],
)
def test_the_public_url_host_must_be_allowed(
    settings, voiceagents_settings, public_url, debug, allowed_hosts, expected
):
    voiceagents_settings["PUBLIC_URL"] = public_url
    settings.DEBUG = debug
    settings.ALLOWED_HOSTS = allowed_hosts
    messages = check_public_url_host_allowed(None)
    assert ids(messages) == expected
    if expected:
        assert "DisallowedHost" in messages[0].msg
        assert "'voice.example.com'" in messages[0].hint or "'127.0.0.1'" in messages[0].hint


def test_the_public_url_host_check_agrees_with_django_on_a_request(
    settings, voiceagents_settings, rf
):
    from django.core.exceptions import DisallowedHost

    voiceagents_settings["PUBLIC_URL"] = "https://voice.example.com"
    settings.DEBUG = True
    for allowed, expected in (([], ["telephony.E004"]), (["voice.example.com"], [])):
        settings.ALLOWED_HOSTS = allowed
        request = rf.post("/telephony/twilio/voice/", HTTP_HOST="voice.example.com")
        try:
            request.get_host()
            accepted = True
        except DisallowedHost:
            accepted = False
        assert accepted == (expected == [])
        assert ids(check_public_url_host_allowed(None)) == expected


def test_recordings_inside_the_project_directory_warn(settings, tmp_path, monkeypatch):
    project = tmp_path / "mysite"
    (project / "media").mkdir(parents=True)
    monkeypatch.chdir(project)
    settings.BASE_DIR = tmp_path / "elsewhere"
    settings.MEDIA_ROOT = ""  # startproject's default: files land in the working directory
    messages = check_recordings_outside_project(None)
    assert ids(messages) == ["voiceagents.W003"]
    assert str(project) in messages[0].msg and "MEDIA_ROOT" in messages[0].hint
    monkeypatch.chdir(tmp_path)
    settings.BASE_DIR = project
    settings.MEDIA_ROOT = str(project / "media")
    assert ids(check_recordings_outside_project(None)) == ["voiceagents.W003"]
    monkeypatch.chdir(project)
    settings.MEDIA_ROOT = str(tmp_path / "recordings")
    assert check_recordings_outside_project(None) == []


def test_recordings_in_a_storage_that_is_not_a_directory_do_not_warn(settings, tmp_path):
    settings.MEDIA_ROOT = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert check_recordings_outside_project(None) == []


@pytest.mark.urls(__name__)
def test_recordings_served_as_public_media_warn(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.MEDIA_URL = "/media/"
    messages = check_recordings_not_served_publicly(None)
    assert ids(messages) == ["voiceagents.W004"]
    assert "/media/voiceagents/recordings/" in messages[0].msg
    settings.MEDIA_URL = "/private-media/"  # not served by this URLconf
    assert check_recordings_not_served_publicly(None) == []


def test_recordings_are_not_public_in_the_example_project(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    assert settings.MEDIA_URL
    assert check_recordings_not_served_publicly(None) == []
