"""The Call Control REST client against the loopback fake Telnyx API.

The API: docs/carriers/telnyx.md#call-control-commands.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from telephony.carriers.telnyx.rest import (
    DEFAULT_API_URL,
    TelnyxAccount,
    TelnyxCallControl,
    error_codes,
    is_transient,
)
from tests.fakes import telnyx as fake
from tests.telephony.conftest import create_credential
from voiceagents.exceptions import CarrierAPIError, ConfigurationError

CCID = "v3:2EC-70CTEjlUq3tDM0CxKXIt5/5N4iP4wo7_+PfH"


@pytest.fixture
def api():
    with fake.FakeTelnyxAPI() as server:
        yield server


@pytest.fixture
async def rest(api):
    async with TelnyxCallControl(TelnyxAccount(fake.API_KEY, api.url, timeout=2.0)) as client:
        yield client


async def test_commands_post_to_the_call_with_bearer_auth_and_a_command_id(rest, api):
    assert await rest.hangup(CCID) == {"result": "ok"}
    (command,) = api.commands
    assert command.call_control_id == CCID  # URL-encoded on the way, decoded by the server
    assert command.action == "hangup"
    assert command.headers["Authorization"] == f"Bearer {fake.API_KEY}"
    assert uuid.UUID(command.body["command_id"])


async def test_each_command_gets_its_own_command_id_unless_given(rest, api):
    await rest.hangup(CCID)
    await rest.hangup(CCID)
    await rest.hangup(CCID, command_id="hangup-42")
    ids = [c.body["command_id"] for c in api.of("hangup")]
    assert ids[0] != ids[1] and ids[2] == "hangup-42"


@pytest.mark.parametrize(
    "to", ["+14155550123", "sip:desk@pbx.example.com"], ids=["e164", "sip-uri"]
)
async def test_transfer(rest, api, to):
    await rest.transfer(CCID, to, from_="+14155550100", timeout_secs=30)
    (command,) = api.of("transfer")
    assert {k: v for k, v in command.body.items() if k != "command_id"} == {
        "to": to,
        "from": "+14155550100",
        "timeout_secs": 30,
    }


async def test_transfer_leaves_out_options_not_given(rest, api):
    await rest.transfer(CCID, "+14155550123")
    assert set(api.of("transfer")[0].body) == {"to", "command_id"}


async def test_start_and_stop_recording(rest, api):
    await rest.start_recording(CCID, play_beep=False)
    await rest.stop_recording(CCID)
    start, stop = api.commands
    assert (start.action, stop.action) == ("record_start", "record_stop")
    assert {k: v for k, v in start.body.items() if k != "command_id"} == {
        "format": "mp3",
        "channels": "dual",
        "play_beep": False,
    }
    assert set(stop.body) == {"command_id"}


async def test_other_commands(rest, api):
    await rest.answer(CCID, client_state="e30=")
    await rest.reject(CCID, "USER_BUSY")
    await rest.speak(CCID, "Hello", client_state="e30=")
    await rest.stop_streaming(CCID)
    assert api.actions() == ["answer", "reject", "speak", "streaming_stop"]
    assert api.of("answer")[0].body["client_state"] == "e30="
    assert api.of("reject")[0].body["cause"] == "USER_BUSY"
    speak = api.of("speak")[0].body
    assert (speak["payload"], speak["voice"], speak["language"]) == ("Hello", "female", "en-US")
    assert "stream_id" not in api.of("streaming_stop")[0].body


async def test_vendor_errors_carry_the_vendors_message_and_status(rest, api):
    api.fail(
        "hangup", 422, code="90018", title="Call has already ended", detail="This call is gone."
    )
    with pytest.raises(CarrierAPIError) as raised:
        await rest.hangup(CCID)
    error = raised.value
    assert error.vendor == "telnyx"
    assert error.status_code == 422
    assert "This call is gone." in str(error)
    assert error_codes(error) == ["90018"]
    assert not is_transient(error)


async def test_a_wrong_api_key_is_an_error(api):
    async with TelnyxCallControl(TelnyxAccount("wrong-key", api.url)) as rest:
        with pytest.raises(CarrierAPIError) as raised:
            await rest.hangup(CCID)
    assert raised.value.status_code == 401
    assert "credentials" in str(raised.value)
    assert "wrong-key" not in str(raised.value)


async def test_server_errors_are_transient(rest, api):
    api.fail("hangup", 500, code="10000", title="Internal error", detail="try again")
    with pytest.raises(CarrierAPIError) as raised:
        await rest.hangup(CCID)
    assert is_transient(raised.value)


async def test_a_dropped_connection_is_a_transient_error(rest, api):
    api.drop("hangup")
    with pytest.raises(CarrierAPIError) as raised:
        await rest.hangup(CCID)
    assert raised.value.status_code is None
    assert is_transient(raised.value)
    assert raised.value.__cause__ is not None


async def test_an_unreachable_api_is_a_transient_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with TelnyxCallControl(
        TelnyxAccount(fake.API_KEY, f"http://127.0.0.1:{port}/v2", 1.0)
    ) as rest:
        with pytest.raises(CarrierAPIError) as raised:
            await rest.hangup(CCID)
    assert is_transient(raised.value)


async def test_slow_answers_time_out(api):
    api.delay = 0.5
    async with TelnyxCallControl(TelnyxAccount(fake.API_KEY, api.url, timeout=0.1)) as rest:
        with pytest.raises(CarrierAPIError, match="Timeout"):
            await rest.hangup(CCID)


# -- accounts ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_telnyx_settings_from_the_environment(monkeypatch):
    for name in ("TELNYX_API_KEY", "TELNYX_API_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.django_db
def test_account_of_a_credential_uses_its_secret_and_base_url(voiceagents_settings):
    voiceagents_settings["HTTP_TIMEOUT"] = 3.5
    credential = create_credential(
        "telnyx", "KEY-secret", api_base_url="https://eu.telnyx.example/v2/"
    )
    account = TelnyxAccount.from_credential(credential)
    assert (account.api_key, account.base_url, account.timeout) == (
        "KEY-secret",
        "https://eu.telnyx.example/v2",
        3.5,
    )
    assert "KEY-secret" not in repr(account)


@pytest.mark.django_db
def test_account_falls_back_to_settings(voiceagents_settings):
    voiceagents_settings["TELNYX_API_KEY"] = "KEY-from-settings"
    account = TelnyxAccount.from_credential(None)
    assert (account.api_key, account.base_url) == ("KEY-from-settings", DEFAULT_API_URL)
    voiceagents_settings["TELNYX_API_URL"] = "http://127.0.0.1:9/v2"
    assert TelnyxAccount.from_credential(None).base_url == "http://127.0.0.1:9/v2"


def test_no_api_key_names_the_setting():
    with pytest.raises(ConfigurationError, match="TELNYX_API_KEY"):
        TelnyxAccount.from_credential(None)
