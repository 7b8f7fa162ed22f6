"""Prepare the database of a real server process for media-stream tests.

``python -m tests.servers.seed --openai-url ws://127.0.0.1:PORT/v1/realtime --calls 2`` (with the
server's environment: ``DATABASE_URL`` ...) migrates, creates a Twilio number answered by an agent
on that OpenAI URL and ``--calls`` ringing calls, and prints them as JSON lines
``{"call_id": ..., "call_sid": ...}``. The test process mints their stream tokens itself (same
``SECRET_KEY``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets

AUTH_TOKEN = "servers-twilio-auth-token-0123456789"
#: The fakes' keys (written out: this module runs in the server's environment, not the tests').
ELEVENLABS_API_KEY = "sk_test_elevenlabs_0123456789abcdef"
DEEPGRAM_API_KEY = "dg-test-key"
OPENAI_CHAT_API_KEY = "sk-test-openai-chat-0123456789abcdef"
OUR_NUMBER = "+15550000002"


def seed(
    openai_url: str, calls: int, elevenlabs_url: str = "", pipeline: dict | None = None
) -> list[dict]:
    from django.core.management import call_command

    from voiceagents.models import Agent, Call, CallStatus, Credential, PhoneNumber

    call_command("migrate", verbosity=0, interactive=False)
    number = PhoneNumber.objects.filter(number=OUR_NUMBER).first()
    if number is None:
        twilio = Credential(vendor="twilio", label="twilio", data={"account_sid": "AC" + "c" * 32})
        twilio.secret = AUTH_TOKEN
        twilio.save()
        openai = Credential(vendor="openai", label="openai", api_base_url=openai_url)
        openai.secret = "sk-test-openai"
        openai.save()
        agent = Agent.objects.create(
            name="Servers", slug="servers", first_message="Hello.", credential=openai
        )
        number = PhoneNumber.objects.create(
            number=OUR_NUMBER, carrier="twilio", credential=twilio, agent=agent
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
            to_number=OUR_NUMBER,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openai-url", default="ws://127.0.0.1:9/v1/realtime")
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--elevenlabs-url", default="")
    parser.add_argument(
        "--pipeline", default="", help='JSON {"deepgram": URL, "chat": URL, "tts": URL}'
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    pipeline = json.loads(args.pipeline) if args.pipeline else None
    for call in seed(args.openai_url, args.calls, args.elevenlabs_url, pipeline):
        print(json.dumps(call), flush=True)


if __name__ == "__main__":
    main()
