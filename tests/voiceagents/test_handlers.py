import pytest

import voiceagents
from voiceagents.exceptions import ConfigurationError, UnknownReplyHandler
from voiceagents.handlers import get_reply_handler, registered_names


def settings_handler(event):
    return "from settings"


@voiceagents.reply_handler("handlers-test-decorated")
def decorated(event):
    return "decorated"


def test_decorated_handler_is_found_by_name():
    assert get_reply_handler("handlers-test-decorated") is decorated
    assert "handlers-test-decorated" in registered_names()


def test_dotted_path_handler_from_settings(voiceagents_settings):
    voiceagents_settings["REPLY_HANDLERS"] = {
        "from-settings": "tests.voiceagents.test_handlers.settings_handler"
    }
    assert get_reply_handler("from-settings") is settings_handler
    assert "from-settings" in registered_names()


def test_unknown_handler_error_lists_registered_names():
    with pytest.raises(UnknownReplyHandler) as excinfo:
        get_reply_handler("does-not-exist")
    assert "'does-not-exist'" in str(excinfo.value)
    assert "handlers-test-decorated" in str(excinfo.value)


def test_unimportable_dotted_path_is_a_configuration_error(voiceagents_settings):
    voiceagents_settings["REPLY_HANDLERS"] = {"broken": "tests.nowhere.handler"}
    with pytest.raises(ConfigurationError, match="tests.nowhere.handler"):
        get_reply_handler("broken")


def test_registering_a_second_function_under_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        voiceagents.reply_handler("handlers-test-decorated")(settings_handler)
