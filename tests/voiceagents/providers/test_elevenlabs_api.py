"""The ElevenLabs REST client against the fake ElevenLabs API (real HTTP on loopback)."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from voiceagents.exceptions import ProviderAPIError
from voiceagents.providers.elevenlabs_api import ElevenLabsAPI

RACHEL = "21m00Tcm4TlvDq8ikWAM"


def body(**tts):
    return {
        "name": "Front desk",
        "conversation_config": {
            "asr": {"user_input_audio_format": "ulaw_8000"},
            "tts": {"agent_output_audio_format": "ulaw_8000", "voice_id": RACHEL, **tts},
            "agent": {"first_message": "Hello", "prompt": {"prompt": "Be brief."}},
        },
    }


@pytest.fixture
def fake():
    with FakeElevenLabsAPI() as api:
        yield api


@pytest.fixture
def client(fake):
    return ElevenLabsAPI(API_KEY, fake.url, timeout=5)


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_create_then_get_agent(fake, client):
    agent_id = client.create_agent(body())
    assert agent_id.startswith("agent_")
    sent = fake.of("POST", "/v1/convai/agents/create")[0]
    assert sent.headers["xi-api-key"] == API_KEY
    assert sent.json == body()
    agent = client.get_agent(agent_id)
    assert agent["agent_id"] == agent_id
    assert agent["conversation_config"]["tts"]["voice_id"] == RACHEL


def test_update_agent_deep_merges(fake, client):
    agent_id = client.create_agent(body())
    agent = client.update_agent(
        agent_id, {"conversation_config": {"agent": {"prompt": {"prompt": "Be kind."}}}}
    )
    config = agent["conversation_config"]
    assert config["agent"]["prompt"]["prompt"] == "Be kind."
    assert config["agent"]["first_message"] == "Hello"  # kept by the merge
    assert config["tts"]["voice_id"] == RACHEL
    assert fake.of("PATCH")[0].path == f"/v1/convai/agents/{agent_id}"


def test_unknown_voice_is_refused_with_the_vendors_message(client):
    with pytest.raises(ProviderAPIError) as caught:
        client.create_agent(body(voice_id="rachel"))
    assert caught.value.status_code == 422
    assert "conversation_config.tts.voice_id" in str(caught.value)
    assert "was not found" in str(caught.value)


def test_unknown_agent_is_404_with_the_vendors_message(client):
    with pytest.raises(ProviderAPIError) as caught:
        client.get_agent("agent_missing")
    assert caught.value.status_code == 404
    assert "Agent with id agent_missing not found" in str(caught.value)


def test_bad_key_is_401_with_the_vendors_message(fake):
    with pytest.raises(ProviderAPIError) as caught:
        ElevenLabsAPI("sk_wrong", fake.url).list_voices()
    assert caught.value.status_code == 401
    assert "Invalid API key" in str(caught.value)
    assert "check the API key" in str(caught.value)


def test_scripted_vendor_error(fake, client):
    fake.fail_next(500, {"detail": {"status": "internal_error", "message": "Try again later"}})
    with pytest.raises(ProviderAPIError, match="Try again later"):
        client.create_agent(body())
    assert client.create_agent(body())  # only the next request failed


def test_conversation_and_voices(fake, client):
    fake.conversations["conv_1"] = {"conversation_id": "conv_1", "transcript": [], "status": "done"}
    assert client.get_conversation("conv_1")["status"] == "done"
    with pytest.raises(ProviderAPIError) as caught:
        client.get_conversation("conv_2")
    assert caught.value.status_code == 404
    voices = {voice["name"]: voice["voice_id"] for voice in client.list_voices()}
    assert voices["Rachel"] == RACHEL


def test_unreachable_host_is_a_provider_api_error():
    client = ElevenLabsAPI(API_KEY, closed_port_url(), timeout=2)
    with pytest.raises(ProviderAPIError, match="cannot reach ElevenLabs"):
        client.get_agent("agent_x")


def test_dropped_connection_is_a_provider_api_error(fake, client):
    fake.drop_next()
    with pytest.raises(ProviderAPIError, match="cannot reach ElevenLabs"):
        client.list_voices()


# -- the per-call signed URL (async) ------------------------------------------------------------


async def test_signed_url(fake, client):
    fake.conversation_url = "ws://127.0.0.1:4321/v1/convai/conversation"
    agent_id = fake.add_agent(body())
    url = await client.signed_url(agent_id)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == fake.conversation_url
    query = parse_qs(parts.query)
    assert query["agent_id"] == [agent_id]
    assert query["conversation_signature"] == [fake.signatures[-1]]
    assert fake.of("GET", "/v1/convai/conversation/get-signed-url")[0].query == {
        "agent_id": agent_id
    }


async def test_signed_url_for_an_unknown_agent(fake, client):
    with pytest.raises(ProviderAPIError, match="not found"):
        await client.signed_url("agent_missing")
    fake.accept_any_agent = True
    assert "agent_missing" in await client.signed_url("agent_missing")


async def test_signed_url_with_a_bad_key(fake):
    with pytest.raises(ProviderAPIError) as caught:
        await ElevenLabsAPI("sk_wrong", fake.url).signed_url("agent_x", call_id="c1")
    assert caught.value.status_code == 401
    assert "Invalid API key" in str(caught.value)
    assert caught.value.call_id == "c1"


async def test_signed_url_from_an_unreachable_host():
    with pytest.raises(ProviderAPIError, match="cannot reach ElevenLabs"):
        await ElevenLabsAPI(API_KEY, closed_port_url(), timeout=2).signed_url("agent_x")
