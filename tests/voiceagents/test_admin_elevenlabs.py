"""The agent admin's ElevenLabs part: the sync action, resync on save, the status on the page."""

from __future__ import annotations

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains

from tests.fakes.elevenlabs_api import API_KEY, FakeElevenLabsAPI
from tests.voiceagents.factories import make_agent, make_credential
from voiceagents.audio.formats import MULAW_8K
from voiceagents.models import Agent
from voiceagents.providers.elevenlabs_agents import provision

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    with FakeElevenLabsAPI() as api:
        yield api


def convai_agent(fake, **fields) -> Agent:
    fields.setdefault(
        "credential", make_credential("elevenlabs", secret=API_KEY, api_base_url=fake.url)
    )
    return make_agent(provider="elevenlabs_convai", system_prompt="Be brief.", **fields)


def run_action(client, agents):
    return client.post(
        reverse("admin:voiceagents_agent_changelist"),
        {"action": "sync_to_elevenlabs", "_selected_action": [str(a.pk) for a in agents]},
        follow=True,
    )


def change_page(client, agent):
    return client.get(reverse("admin:voiceagents_agent_change", args=[agent.pk]))


def test_sync_action_creates_elevenlabs_agents_and_skips_the_others(admin_client, fake):
    convai = convai_agent(fake)
    theirs = convai_agent(fake, remote_agent_id="agent_theirs")
    realtime = make_agent()

    response = run_action(admin_client, [convai, theirs, realtime])

    convai.refresh_from_db()
    agent_id = convai.remote_agents["ulaw_8000"]["agent_id"]
    assert list(fake.agents) == [agent_id]
    assertContains(response, f"in sync with ElevenLabs (ulaw_8000 → {agent_id})")
    assertContains(response, "2 agents were skipped")
    assert fake.of("PATCH") == []

    run_action(admin_client, [convai])  # the action always pushes the current configuration
    assert [r.path for r in fake.of("PATCH")] == [f"/v1/convai/agents/{agent_id}"]


def test_a_refused_sync_shows_the_vendors_message_on_the_list_and_the_change_page(
    admin_client, fake
):
    agent = convai_agent(
        fake, credential=make_credential("elevenlabs", secret="sk_wrong", api_base_url=fake.url)
    )

    response = run_action(admin_client, [agent])

    assertContains(response, "ElevenLabs sync failed")
    assertContains(response, "Invalid API key")
    page = change_page(admin_client, agent)
    assertContains(page, "ElevenLabs Conversational AI")
    assertContains(page, "Last sync failed:")
    assertContains(page, "Invalid API key")


def test_the_change_page_lists_the_remote_agents_and_the_last_sync(admin_client, fake):
    agent = convai_agent(fake)
    agent_id = provision(agent, MULAW_8K)["agent_id"]

    page = change_page(admin_client, agent)

    assertContains(page, f"<li>ulaw_8000: <code>{agent_id}</code></li>", html=True)
    assertContains(page, "Last synced:")
    assert "Last sync failed:" not in page.content.decode()


def test_saving_an_agent_with_remote_agents_pushes_the_change(admin_client, fake):
    agent = convai_agent(fake)
    agent_id = provision(agent, MULAW_8K)["agent_id"]
    url = reverse("admin:voiceagents_agent_change", args=[agent.pk])
    form = change_page(admin_client, agent).context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in form.initial.items()
        if name in form.fields
    }
    data.update(
        system_prompt="You are the night shift.",
        credential=str(agent.credential_id),
        enabled="on",
        record_calls="on",
        variables="{}",
        provider_options="{}",
        transfer_allowlist="[]",
        stt_credential="",
        tts_credential="",
        reply_credential="",
        _save="Save",
    )
    for key in ("phone_numbers-TOTAL_FORMS", "phone_numbers-INITIAL_FORMS"):
        data[key] = "0"

    response = admin_client.post(url, data, follow=True)

    assert response.status_code == 200
    assertContains(response, f"in sync with ElevenLabs (ulaw_8000 → {agent_id})")
    prompt = fake.agent(agent_id)["conversation_config"]["agent"]["prompt"]["prompt"]
    assert prompt == "You are the night shift."


def test_an_agent_without_remote_agents_says_so_and_costs_no_request(admin_client, fake):
    agent = convai_agent(fake)
    page = change_page(admin_client, agent)
    assertContains(page, "None yet")
    assert fake.requests == []
