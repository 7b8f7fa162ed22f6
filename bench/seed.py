"""Prepare the database of the server under test: migrate, then one Twilio number and agent.

Run with the server's environment (``DATABASE_URL`` ...): ``python -m bench.seed --openai-url
ws://127.0.0.1:PORT/v1/realtime``, or for an ElevenLabs Conversational AI agent
``python -m bench.seed --provider elevenlabs_convai --elevenlabs-url http://127.0.0.1:PORT``,
or for a pipeline agent (Deepgram → LLM prompt → ElevenLabs TTS, all three on the pipeline fake)
``python -m bench.seed --provider pipeline --pipeline-url http://127.0.0.1:PORT``.
Each provider has its own agent and number (``TO_NUMBERS``), so one database serves both and a
sweep can alternate between them. Idempotent: it updates the rows it finds. The agent's system
prompt carries ``{caller_number}``, which is how the fake provider tells calls apart.
"""

from __future__ import annotations

import argparse
import os
import sys

AUTH_TOKEN = "bench-twilio-auth-token-0123456789"
ACCOUNT_SID = "AC" + "b" * 32
OPENAI_KEY = "sk-bench"
#: The fake's default key; the ElevenLabs fake checks it as ``xi-api-key``.
ELEVENLABS_KEY = "sk-bench"
#: An operator-supplied ElevenLabs agent: calls use it as is, nothing is provisioned.
ELEVENLABS_AGENT_ID = "bench-agent"
#: The pipeline fake's key, checked by each of its three services.
PIPELINE_KEY = "sk-bench"
TO_NUMBER = "+15550000001"
#: The number each provider's bench agent answers.
TO_NUMBERS = {
    "openai_realtime": TO_NUMBER,
    "elevenlabs_convai": "+15550000003",
    "pipeline": "+15550000004",
}
PROVIDERS = tuple(TO_NUMBERS)


def _credential(vendor: str, label: str, url: str, secret: str):
    from voiceagents.models import Credential

    credential = Credential.objects.filter(vendor=vendor, label=label).first() or Credential(
        vendor=vendor, label=label
    )
    credential.api_base_url = url
    credential.secret = secret
    credential.save()
    return credential


def seed(url: str, *, record: bool, first_message: str, provider: str = "openai_realtime") -> None:
    """``url``: the fake's Realtime socket URL (OpenAI) or its API root (ElevenLabs, pipeline)."""
    from django.core.management import call_command

    from voiceagents.models import Agent, Credential, PhoneNumber

    call_command("migrate", verbosity=0, interactive=False)
    twilio = Credential.objects.filter(vendor="twilio", label="bench-twilio").first() or Credential(
        vendor="twilio", label="bench-twilio"
    )
    twilio.data = {"account_sid": ACCOUNT_SID}
    twilio.secret = AUTH_TOKEN
    twilio.save()
    if provider == "pipeline":
        agent = _pipeline_agent(url, record=record, first_message=first_message)
        PhoneNumber.objects.update_or_create(
            number=TO_NUMBERS[provider],
            defaults={"carrier": "twilio", "credential": twilio, "agent": agent},
        )
        return
    vendor, secret = {
        "openai_realtime": ("openai", OPENAI_KEY),
        "elevenlabs_convai": ("elevenlabs", ELEVENLABS_KEY),
    }[provider]
    credential = Credential.objects.filter(
        vendor=vendor, label=f"bench-{vendor}"
    ).first() or Credential(vendor=vendor, label=f"bench-{vendor}")
    credential.api_base_url = url
    credential.secret = secret
    credential.save()
    elevenlabs = provider == "elevenlabs_convai"
    agent, _ = Agent.objects.update_or_create(
        slug="bench-elevenlabs" if elevenlabs else "bench",
        defaults={
            "name": "Bench agent (ElevenLabs)" if elevenlabs else "Bench agent",
            "provider": provider,
            "system_prompt": "Bench agent for caller {caller_number}.",
            "first_message": first_message,
            "credential": credential,
            "remote_agent_id": ELEVENLABS_AGENT_ID if elevenlabs else "",
            "record_calls": record,
            "max_call_duration": 3600,
        },
    )
    PhoneNumber.objects.update_or_create(
        number=TO_NUMBERS[provider],
        defaults={"carrier": "twilio", "credential": twilio, "agent": agent},
    )


def _pipeline_agent(root: str, *, record: bool, first_message: str):
    """Deepgram → the LLM prompt (OpenAI chat completions) → ElevenLabs TTS, each stage's
    credential pointing at the pipeline fake on ``root`` (``http://127.0.0.1:PORT``): Deepgram's
    base URL is the whole ``/v1/listen`` socket URL, the chat one the whole completions URL,
    ElevenLabs' the API root."""
    from voiceagents.models import Agent

    ws_root = "ws" + root[len("http") :]
    agent = Agent.objects.filter(slug="bench-pipeline").first() or Agent(slug="bench-pipeline")
    agent.name = "Bench agent (pipeline)"
    agent.provider = "pipeline"
    agent.system_prompt = "Bench agent for caller {caller_number}."
    agent.first_message = first_message
    agent.record_calls = record
    agent.max_call_duration = 3600
    agent.stt_provider = "deepgram"
    agent.stt_credential = _credential(
        "deepgram", "bench-deepgram", f"{ws_root}/v1/listen", PIPELINE_KEY
    )
    agent.reply_prompt = "You answer the phone for the bench. Be brief."
    agent.reply_credential = _credential(
        "openai", "bench-openai-chat", f"{root}/v1/chat/completions", PIPELINE_KEY
    )
    agent.tts_provider = "elevenlabs"
    agent.tts_credential = _credential("elevenlabs", "bench-elevenlabs-tts", root, PIPELINE_KEY)
    agent.full_clean()
    agent.save()
    return agent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--provider", choices=PROVIDERS, default="openai_realtime")
    p.add_argument("--openai-url", default="", help="openai_realtime: the fake's socket URL")
    p.add_argument("--elevenlabs-url", default="", help="elevenlabs_convai: the fake's HTTP URL")
    p.add_argument("--pipeline-url", default="", help="pipeline: the fake's HTTP URL")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--first-message", default="Hello, this is the bench agent.")
    args = p.parse_args(argv)
    url = {
        "elevenlabs_convai": args.elevenlabs_url,
        "pipeline": args.pipeline_url,
    }.get(args.provider, args.openai_url)
    if not url:
        p.error(f"--provider {args.provider} needs its fake's URL")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patter_site.settings")
    import django

    django.setup()
    seed(url, record=not args.no_record, first_message=args.first_message, provider=args.provider)
    return 0


if __name__ == "__main__":
    sys.exit(main())
