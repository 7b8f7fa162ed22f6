"""The ``demo`` reply handler and the offline demo agent that ``make demo`` seeds."""

from datetime import UTC, datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import call_command

from voiceagents.demo import CAPABILITIES, NOT_HEARD, answer, spoken_time
from voiceagents.handlers import get_reply_handler
from voiceagents.models import Agent


def message(text: str) -> dict:
    return {"type": "message", "text": text, "history": [], "call_id": "c", "agent": "Offline demo"}


def test_the_demo_handler_is_registered_when_the_app_loads():
    assert get_reply_handler("demo")(message("good morning")) == "You said: good morning."


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("hello", "You said: hello."),
        ("  Hello,   world!  ", "You said: Hello, world."),
        ("", NOT_HEARD),
        ("...", NOT_HEARD),
        ("what can you do", CAPABILITIES),
        ("So, what can you do?", CAPABILITIES),
        ("help me", CAPABILITIES),
        ("I need some helpful advice", "You said: I need some helpful advice."),
    ],
)
def test_demo_answers(text, reply):
    assert answer(message(text)) == reply


def test_a_key_press_is_named():
    assert answer({"type": "dtmf", "text": "", "digit": "7"}) == "You pressed 7."
    assert answer({"type": "dtmf", "text": "", "digit": "#"}) == "You pressed #."


@pytest.mark.parametrize("text", ["what time is it", "What's the TIME?", "look at the clock"])
def test_time_questions_get_the_time(text):
    now = datetime(2026, 3, 4, 15, 5, tzinfo=UTC)
    assert answer(message(text), now=now) == "It is 3:05 PM UTC."


def test_spoken_time_in_twelve_hours():
    zone = timezone(timedelta(hours=2), "CEST")
    assert spoken_time(datetime(2026, 1, 1, 0, 7, tzinfo=zone)) == "It is 12:07 AM CEST."
    assert spoken_time(datetime(2026, 1, 1, 12, 30, tzinfo=zone)) == "It is 12:30 PM CEST."
    assert spoken_time(datetime(2026, 1, 1, 9, 0)) == "It is 9:00 AM."


def test_the_registered_handler_tells_the_current_time():
    reply = get_reply_handler("demo")(message("what time is it"))
    assert reply.startswith("It is ") and reply.endswith(" UTC.")


@pytest.mark.django_db
def test_make_demo_seeds_the_offline_demo_agent(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = StringIO()
    for _ in range(2):
        call_command("voiceagents_demo", stdout=out)
    agent = Agent.objects.get(slug="offline-demo")
    assert (agent.name, agent.provider) == ("Offline demo", "pipeline")
    assert (agent.stt_provider, agent.tts_provider, agent.tts_voice) == ("local", "local", "en")
    assert (agent.reply_handler, agent.reply_prompt) == ("demo", "")
    assert agent.first_message == (
        "Hello! This is the offline demo agent. Say something and I will answer."
    )
    assert agent.credential is None and agent.stt_credential is None
    # Alongside the OpenAI agent, each created once.
    assert sorted(Agent.objects.values_list("slug", flat=True)) == ["demo", "offline-demo"]
    assert 'voiceagents_call_simulate --agent "Offline demo" --say "hello"' in out.getvalue()


@pytest.mark.django_db
def test_make_demo_keeps_edits_to_the_offline_agent(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    call_command("voiceagents_demo", stdout=StringIO())
    Agent.objects.filter(slug="offline-demo").update(first_message="Edited.")
    call_command("voiceagents_demo", stdout=StringIO())
    assert Agent.objects.get(slug="offline-demo").first_message == "Edited."
