"""Prepare the database of a real server process for media-stream tests.

``python -m tests.servers.seed --openai-url ws://127.0.0.1:PORT/v1/realtime --calls 2`` (with the
server's environment: ``DATABASE_URL`` ...) migrates, creates a Twilio number answered by an agent
on that OpenAI URL and ``--calls`` ringing calls, and prints them as JSON lines
``{"call_id": ..., "call_sid": ...}``. The test process mints their stream tokens itself (same
``SECRET_KEY``).

``--serve`` keeps one such process for many databases (``running.seed``): a Django start-up and
a migration cost seconds, a seed a few ms. It migrates a template database once and copies it for
each new database; requests and answers are JSON lines on stdin and stdout (``serve``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

AUTH_TOKEN = "servers-twilio-auth-token-0123456789"
#: The fakes' keys (written out: this module runs in the server's environment, not the tests').
ELEVENLABS_API_KEY = "sk_test_elevenlabs_0123456789abcdef"
DEEPGRAM_API_KEY = "dg-test-key"
OPENAI_CHAT_API_KEY = "sk-test-openai-chat-0123456789abcdef"
OUR_NUMBER = "+15550000002"


def seed(
    openai_url: str,
    calls: int,
    elevenlabs_url: str = "",
    pipeline: dict | None = None,
    *,
    migrate: bool = True,
    our_number: str = OUR_NUMBER,
    agent_name: str = "Servers",
) -> list[dict]:
    """``our_number`` and ``agent_name`` (its slug, lower-case with dashes) name the number and
    its agent: a test on a shared server (``running.SharedServer``) has its own in the database."""
    from django.core.management import call_command
    from django.utils.text import slugify

    from voiceagents.models import Agent, Call, CallStatus, Credential, PhoneNumber

    if migrate:
        call_command("migrate", verbosity=0, interactive=False)
    number = PhoneNumber.objects.filter(number=our_number).first()
    if number is None:
        twilio = Credential(vendor="twilio", label="twilio", data={"account_sid": "AC" + "c" * 32})
        twilio.secret = AUTH_TOKEN
        twilio.save()
        openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
        openai.secret = "sk-test-openai"
        openai.save()
        agent = Agent.objects.create(
            name=agent_name, slug=slugify(agent_name), first_message="Hello.", credential=openai
        )
        number = PhoneNumber.objects.create(
            number=our_number, carrier="twilio", credential=twilio, agent=agent
        )
    if elevenlabs_url and number.agent.provider != "elevenlabs_convai":
        # The number's agent answers with ElevenLabs ConvAI, with nothing but an API key.
        elevenlabs = Credential(vendor="elevenlabs", label="eleven", api_base_url=elevenlabs_url)
        elevenlabs.secret = ELEVENLABS_API_KEY
        elevenlabs.save()
        Agent.objects.filter(pk=number.agent_id).update(
            provider="elevenlabs_convai", credential=elevenlabs, voice="rachel"
        )
    if pipeline and number.agent.provider != "pipeline":
        _to_pipeline(number.agent_id, pipeline)
    made = []
    for _ in range(calls):
        call = Call.objects.create(
            agent=number.agent,
            phone_number=number,
            carrier="twilio",
            carrier_call_id="CA" + secrets.token_hex(16),
            direction="inbound",
            from_number="+15550000100",
            to_number=our_number,
            status=CallStatus.RINGING,
        )
        made.append({"call_id": str(call.pk), "call_sid": call.carrier_call_id})
    return made


def _to_pipeline(agent_pk, urls: dict) -> None:
    """The number's agent answers with the pipeline: Deepgram → an LLM prompt → ElevenLabs TTS,
    each stage's credential pointing at its fake (``urls``: ``deepgram``, ``chat``, ``tts``)."""
    from voiceagents.models import Agent, Credential

    def credential(vendor, secret, url):
        made = Credential(vendor=vendor, label=f"{vendor} (pipeline)", api_base_url=url)
        made.secret = secret
        made.save()
        return made

    agent = Agent.objects.get(pk=agent_pk)
    agent.provider = "pipeline"
    agent.stt_provider = "deepgram"
    agent.stt_credential = credential("deepgram", DEEPGRAM_API_KEY, urls["deepgram"])
    agent.reply_prompt = "You answer the phone for the servers test."
    agent.reply_credential = credential("openai", OPENAI_CHAT_API_KEY, urls["chat"])
    agent.tts_provider = "elevenlabs"
    agent.tts_credential = credential("elevenlabs", ELEVENLABS_API_KEY, urls["tts"])
    agent.full_clean()
    agent.save()


def _use_database(path: Path) -> None:
    """Point the default (SQLite) connection at ``path``; the next query opens it."""
    from django.db import connections

    connections.close_all()
    connections["default"].settings_dict["NAME"] = str(path)


def serve() -> None:
    """Seed one database per request until stdin closes.

    A request: ``{"database": PATH, "environ": {...}, "openai_url": ..., "calls": ...,
    "elevenlabs_url": ..., "pipeline": ..., "our_number": ..., "agent_name": ...}``. The
    process's environment becomes ``environ`` for the request (settings read at use,
    ``VOICEAGENTS_*``, see what it would be in a process of its own); those read at start-up are
    the same for every request (``running`` keeps one process per such environment). A database
    that does not exist yet starts as a copy of the (migrated) template; one this process has not
    made or seeded before is migrated first (a shared server's database is seeded once per test,
    and migrated once). The answer: the calls' JSON lines, then ``{"done": true}`` or
    ``{"error": ...}``.
    """
    from django.core.management import call_command

    template = Path(tempfile.mkdtemp(prefix="voiceagents-seed-")) / "template.sqlite3"
    _use_database(template)
    call_command("migrate", verbosity=0, interactive=False)
    _use_database(template)  # closed: SQLite folds its WAL back into the file
    migrated: set[Path] = set()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                os.environ.clear()
                os.environ.update(request["environ"])
                database = Path(request["database"])
                if not database.exists():
                    shutil.copyfile(template, database)
                    migrated.add(database)
                _use_database(database)
                made = seed(
                    request["openai_url"],
                    request["calls"],
                    request["elevenlabs_url"],
                    request["pipeline"],
                    migrate=database not in migrated,
                    our_number=request["our_number"],
                    agent_name=request["agent_name"],
                )
                migrated.add(database)
                answer = [*made, {"done": True}]
            except Exception:
                answer = [{"error": traceback.format_exc()}]
            finally:
                _use_database(template)  # nothing of the request's database stays open
            print("\n".join(json.dumps(item) for item in answer), flush=True)
    finally:
        shutil.rmtree(template.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openai-url", default="ws://127.0.0.1:9/v1/realtime")
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--elevenlabs-url", default="")
    parser.add_argument(
        "--pipeline", default="", help='JSON {"deepgram": URL, "chat": URL, "tts": URL}'
    )
    parser.add_argument("--serve", action="store_true", help="seed on request (see serve)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    if args.serve:
        serve()
        return
    pipeline = json.loads(args.pipeline) if args.pipeline else None
    for call in seed(args.openai_url, args.calls, args.elevenlabs_url, pipeline):
        print(json.dumps(call), flush=True)


if __name__ == "__main__":
    main()
