import pytest


@pytest.fixture
def voiceagents_settings(settings):
    """Edit VOICEAGENTS for one test: ``voiceagents_settings["KEY"] = value``."""
    settings.VOICEAGENTS = dict(settings.VOICEAGENTS)
    return settings.VOICEAGENTS
