"""Provisioning ElevenLabs agents from our agents, against the fake ElevenLabs API."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from tests.voiceagents.factories import make_agent, make_credential
from voiceagents.audio.formats import ALAW_8K, MULAW_8K, PCM16_16K
from voiceagents.exceptions import ProvisioningError
from voiceagents.models import Agent
from voiceagents.providers import providers
from voiceagents.providers.elevenlabs_agents import (
    agent_body,
    config_hash,
    format_for,
    provision,
    sync_agent,
)

pytestmark = pytest.mark.django_db

RACHEL = "21m00Tcm4TlvDq8ikWAM"
ADAM = "pNInz6obpgDQGcFmaJgB"


@pytest.fixture
def fake():
    with FakeElevenLabsAPI() as api:
        yield api


def convai_agent(fake, **fields) -> Agent:
    fields.setdefault(
        "credential", make_credential("elevenlabs", secret=API_KEY, api_base_url=fake.url)
    )
    fields.setdefault("system_prompt", "You answer for {company}.")
    fields.setdefault("first_message", "Hi, this is {company}!")
    fields.setdefault("variables", {"company": "Acme Dental"})
    return make_agent(provider="elevenlabs_convai", **fields)


def writes(fake) -> list:
    return [r for r in fake.requests if r.method != "GET"]


def test_formats_per_carrier_format():
    assert format_for(MULAW_8K) == "ulaw_8000"
    assert format_for(PCM16_16K) == "pcm_16000"
    assert format_for(ALAW_8K) == "pcm_16000"


def test_spec_points_at_the_rest_root_and_the_provisioner():
    spec = providers.get("elevenlabs_convai")
    assert spec.resolve_url() == "https://api.elevenlabs.io"
    assert spec.provisioner == "voiceagents.providers.elevenlabs_agents.provision_call"


def test_body_carries_prompt_voice_formats_overrides_and_tools(fake):
    agent = convai_agent(
        fake, voice="Adam", language="en-GB", model="eleven_flash_v2_5",
        transfer_allowlist=["+14155550100"],
    )  # fmt: skip
    body = agent_body(agent, "pcm_16000")
    config = body["conversation_config"]
    assert config["asr"] == {"user_input_audio_format": "pcm_16000"}
    assert config["tts"] == {
        "agent_output_audio_format": "pcm_16000",
        "voice_id": ADAM,
        "model_id": "eleven_flash_v2_5",
    }
    assert config["agent"]["prompt"]["prompt"] == "You answer for Acme Dental."
    assert config["agent"]["first_message"] == "Hi, this is Acme Dental!"
    assert config["agent"]["language"] == "en"
    tools = {tool["name"]: tool for tool in config["agent"]["prompt"]["tools"]}
    assert set(tools) == {"end_call", "transfer_call"}
    assert tools["transfer_call"]["type"] == "client"
    assert tools["transfer_call"]["expects_response"] is True
    assert tools["transfer_call"]["parameters"]["required"] == ["number"]
    overrides = body["platform_settings"]["overrides"]["conversation_config_override"]
    assert overrides["agent"] == {
        "prompt": {"prompt": True},
        "first_message": True,
        "language": True,
    }
    assert overrides["tts"]["voice_id"] is True
    assert body["platform_settings"]["auth"] == {"enable_auth": True}
    assert body["name"].startswith(f"{agent.name} (pcm_16000)")
    # The list replaces ElevenLabs' default: every event a call reads is named.
    events = set(config["conversation"]["client_events"])
    assert {"audio", "ping", "interruption", "agent_response_correction"} <= events
    assert {"user_transcript", "agent_response", "client_tool_call"} <= events


def test_no_transfer_tool_without_an_allowlist_and_no_model_when_blank(fake):
    config = agent_body(convai_agent(fake), "ulaw_8000")["conversation_config"]
    assert [tool["name"] for tool in config["agent"]["prompt"]["tools"]] == ["end_call"]
    assert "model_id" not in config["tts"]
    assert config["tts"]["voice_id"] == RACHEL  # the default voice, resolved


def test_config_hash_ignores_key_order_and_sees_changes():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_first_call_creates_the_agent_then_reuses_it_without_requests_or_queries(fake):
    agent = convai_agent(fake)
    result = provision(agent, MULAW_8K)
    created = fake.of("POST", "/v1/convai/agents/create")
    assert len(created) == 1
    assert created[0].headers["xi-api-key"] == API_KEY
    assert result == {"agent_id": fake.agent(result["agent_id"])["agent_id"]}
    stored = fake.agent(result["agent_id"])["conversation_config"]
    assert stored["asr"]["user_input_audio_format"] == "ulaw_8000"

    agent = Agent.objects.get(pk=agent.pk)
    assert agent.remote_agents["ulaw_8000"]["agent_id"] == result["agent_id"]
    assert agent.remote_synced_at is not None
    assert agent.remote_sync_error == ""

    seen = len(fake.requests)
    with CaptureQueriesContext(connection) as queries:
        assert provision(agent, MULAW_8K) == result
    assert len(queries) == 0
    assert len(fake.requests) == seen


def test_each_carrier_format_gets_its_own_agent(fake):
    agent = convai_agent(fake)
    ulaw = provision(agent, MULAW_8K)["agent_id"]
    pcm = provision(agent, PCM16_16K)["agent_id"]
    assert ulaw != pcm
    config = fake.agent(pcm)["conversation_config"]
    assert config["tts"]["agent_output_audio_format"] == "pcm_16000"
    assert set(Agent.objects.get(pk=agent.pk).remote_agents) == {"ulaw_8000", "pcm_16000"}


def test_a_changed_prompt_is_patched_into_the_same_agent(fake):
    agent = convai_agent(fake)
    agent_id = provision(agent, MULAW_8K)["agent_id"]
    agent.system_prompt = "Be brief."
    agent.save()
    assert provision(agent, MULAW_8K) == {"agent_id": agent_id}
    patches = fake.of("PATCH")
    assert [p.path for p in patches] == [f"/v1/convai/agents/{agent_id}"]
    assert fake.agent(agent_id)["conversation_config"]["agent"]["prompt"]["prompt"] == "Be brief."
    assert len(fake.of("POST")) == 1


def test_sync_agent_defaults_to_the_synced_formats_and_skips_unchanged_ones(fake):
    agent = convai_agent(fake)
    assert len(sync_agent(agent)) == 1  # nothing synced yet: µ-law
    provision(agent, PCM16_16K)
    before = len(writes(fake))
    ids = sync_agent(agent)
    assert len(ids) == 2
    assert len(writes(fake)) == before  # unchanged: no requests that write
    ids = sync_agent(agent, force=True)
    assert len(writes(fake)) == before + 2
    assert sorted(r.path for r in fake.of("PATCH")) == sorted(f"/v1/convai/agents/{i}" for i in ids)


def test_an_agent_deleted_on_elevenlabs_is_created_again(fake):
    agent = convai_agent(fake)
    old = provision(agent, MULAW_8K)["agent_id"]
    fake.agents.pop(old)
    agent.first_message = "Hello again."
    agent.save()
    new = provision(agent, MULAW_8K)["agent_id"]
    assert new != old
    assert Agent.objects.get(pk=agent.pk).remote_agents["ulaw_8000"]["agent_id"] == new


def test_a_vendor_refusal_is_stored_and_raised_with_the_vendors_message(fake):
    agent = convai_agent(fake)
    fake.fail_next(
        422,
        {
            "detail": [
                {
                    "type": "value_error",
                    "loc": ["body", "conversation_config", "tts", "voice_id"],
                    "msg": "Value error, A voice with the voice_id xyz was not found.",
                    "input": "xyz",
                }
            ]
        },
    )
    with pytest.raises(ProvisioningError) as caught:
        provision(agent, MULAW_8K)
    assert caught.value.status_code == 422
    assert "conversation_config.tts.voice_id" in str(caught.value)
    assert "was not found" in str(caught.value)
    agent = Agent.objects.get(pk=agent.pk)
    assert "A voice with the voice_id xyz was not found" in agent.remote_sync_error
    assert agent.remote_agents == {}
    assert agent.remote_synced_at is None

    provision(agent, MULAW_8K)  # fixed on the vendor side: the error is cleared
    assert Agent.objects.get(pk=agent.pk).remote_sync_error == ""


def test_a_bad_key_is_stored_and_raised(fake):
    agent = convai_agent(
        fake, credential=make_credential("elevenlabs", secret="sk_wrong", api_base_url=fake.url)
    )
    with pytest.raises(ProvisioningError, match="Invalid API key"):
        provision(agent, MULAW_8K)
    assert "Invalid API key" in Agent.objects.get(pk=agent.pk).remote_sync_error


def test_an_unreachable_api_is_a_provisioning_error(fake):
    agent = convai_agent(fake)
    fake.drop_next()
    with pytest.raises(ProvisioningError, match="cannot reach ElevenLabs"):
        provision(agent, MULAW_8K)


def test_an_operator_supplied_agent_is_used_as_is(fake):
    agent = convai_agent(fake, remote_agent_id="agent_theirs")
    with CaptureQueriesContext(connection) as queries:
        assert provision(agent, PCM16_16K) == {"agent_id": "agent_theirs"}
    assert len(queries) == 0
    assert fake.requests == []


def test_the_api_key_setting_is_used_without_a_credential(fake, voiceagents_settings):
    voiceagents_settings["ELEVENLABS_API_KEY"] = API_KEY
    voiceagents_settings["ELEVENLABS_CONVAI_URL"] = fake.url
    agent = Agent(name="No credential", slug="no-credential", provider="elevenlabs_convai")
    agent.save()
    assert provision(agent, MULAW_8K)["agent_id"].startswith("agent_")


def test_options_have_dtmf_and_no_longer_agent_id_or_audio_format():
    options = providers.get("elevenlabs_convai").options
    assert options.errors({"dtmf": "user_message", "dynamic_variables": {"a": "b"}}) == []
    assert options.errors({"dtmf": "digits"}) == [
        "Option 'dtmf' must be one of 'contextual_update', 'user_message'."
    ]
    for gone in ("agent_id", "audio_format"):
        assert options.errors({gone: "x"})[0].startswith(f"Unknown option {gone!r}")
