"""Prepare the database of the server under test: migrate, then one Twilio number and agent.

Run with the server's environment (``DATABASE_URL`` ...): ``python -m bench.seed --openai-url
ws://127.0.0.1:PORT/v1/realtime``. Idempotent: it updates the rows it finds. The agent's system
prompt carries ``{caller_number}``, which is how the fake provider tells calls apart.
"""

from __future__ import annotations

import argparse
import os
import sys

AUTH_TOKEN = "bench-twilio-auth-token-0123456789"
ACCOUNT_SID = "AC" + "b" * 32
OPENAI_KEY = "sk-bench"
TO_NUMBER = "+15550000001"


def seed(openai_url: str, *, record: bool, first_message: str) -> None:
    from django.core.management import call_command

    from voiceagents.models import Agent, Credential, PhoneNumber

    call_command("migrate", verbosity=0, interactive=False)
    twilio = Credential.objects.filter(vendor="twilio", label="bench-twilio").first() or Credential(
        vendor="twilio", label="bench-twilio"
    )
    twilio.data = {"account_sid": ACCOUNT_SID}
    twilio.secret = AUTH_TOKEN
    twilio.save()
    openai = Credential.objects.filter(vendor="openai", label="bench-openai").first() or Credential(
        vendor="openai", label="bench-openai"
    )
    openai.api_base_url = openai_url
    openai.secret = OPENAI_KEY
    openai.save()
    agent, _ = Agent.objects.update_or_create(
        slug="bench",
        defaults={
            "name": "Bench agent",
            "system_prompt": "Bench agent for caller {caller_number}.",
            "first_message": first_message,
            "credential": openai,
            "record_calls": record,
            "max_call_duration": 3600,
        },
    )
    PhoneNumber.objects.update_or_create(
        number=TO_NUMBER, defaults={"carrier": "twilio", "credential": twilio, "agent": agent}
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--openai-url", required=True)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--first-message", default="Hello, this is the bench agent.")
    args = p.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patter_site.settings")
    import django

    django.setup()
    seed(args.openai_url, record=not args.no_record, first_message=args.first_message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
