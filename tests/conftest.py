import pytest


@pytest.fixture
def voiceagents_settings(settings):
    """Edit VOICEAGENTS for one test: ``voiceagents_settings["KEY"] = value``."""
    settings.VOICEAGENTS = dict(settings.VOICEAGENTS)
    return settings.VOICEAGENTS


@pytest.fixture
def recordings_dir(tmp_path, voiceagents_settings):
    """Calls record their temporary WAV files under the test's own directory."""
    voiceagents_settings["RECORDING_TMP_DIR"] = str(tmp_path)
    return tmp_path


@pytest.fixture
async def media_streams():
    """Media streams opened through a carrier harness (tests/calls/harness.py), closed after."""
    from tests.calls.harness import Streams

    opened = Streams()
    yield opened
    await opened.aclose()


@pytest.fixture
def browser_settings(settings):
    """live_server speaks plain http: cookies marked Secure would never come back."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return settings


@pytest.fixture(autouse=True)
def fresh_abuse_limits():
    """Each test starts with empty per-IP and per-process counts (``telephony.limits``)."""
    from telephony import limits

    limits.reset()
    yield
    limits.reset()
