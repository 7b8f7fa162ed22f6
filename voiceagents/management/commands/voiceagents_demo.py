"""Create the demo agents (and a superuser when VOICEAGENTS_ADMIN_PASSWORD is set). Idempotent.

Two agents: "Demo assistant" on OpenAI Realtime (it needs OPENAI_API_KEY), and "Offline demo", a
pipeline of the offline voices and the ``demo`` reply handler, which needs no key and no network:
``manage.py voiceagents_call_simulate --agent "Offline demo" --say "hello"`` calls it.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from voiceagents.models import Agent, Credential

OPENAI = "openai"

DEMO_SLUG = "demo"
OFFLINE_DEMO_SLUG = "offline-demo"
#: The offline agent: eSpeak NG and PocketSphinx stages (``local``) and the ``demo`` handler.
OFFLINE_DEMO = {
    "name": "Offline demo",
    "provider": "pipeline",
    "stt_provider": "local",
    "tts_provider": "local",
    "tts_voice": "en",
    "reply_handler": "demo",
    "first_message": "Hello! This is the offline demo agent. Say something and I will answer.",
}


class Command(BaseCommand):
    help = (
        "Create the demo agents (OpenAI and offline), an OpenAI credential from OPENAI_API_KEY, "
        "and an admin user."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("VOICEAGENTS_ADMIN_USER", "admin"))

    @transaction.atomic
    def handle(self, *args, username, **options):
        credential = self._openai_credential()
        agent, created = Agent.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults={
                "name": "Demo assistant",
                "system_prompt": "You are a helpful assistant for {company}. Keep answers short.",
                "first_message": "Hi, thanks for calling {company}. How can I help?",
                "variables": {"company": "the demo line"},
                "credential": credential,
            },
        )
        if not created and credential and agent.credential_id is None:
            agent.credential = credential
            agent.save(update_fields=["credential"])
        self.stdout.write(f"Demo agent: {agent.name} ({'created' if created else 'exists'})")
        if agent.credential_id is None and not Credential.objects.default_for(OPENAI):
            self.stdout.write(
                "  No OpenAI credential yet: set OPENAI_API_KEY before `make demo`, or add one "
                "under Voice agents → Credentials."
            )
        offline = self._offline_agent()
        self.stdout.write(
            f"Offline demo agent: {offline.name} (no key needed; try: .venv/bin/python manage.py "
            f'voiceagents_call_simulate --agent "{offline.name}" --say "hello")'
        )
        self._superuser(username)

    def _offline_agent(self) -> Agent:
        """The "Offline demo" agent, created once; later edits in the admin are kept."""
        agent, _ = Agent.objects.get_or_create(slug=OFFLINE_DEMO_SLUG, defaults=OFFLINE_DEMO)
        return agent

    def _openai_credential(self):
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            return None
        existing = Credential.objects.filter(
            vendor=OPENAI, label="OpenAI (from OPENAI_API_KEY)"
        ).first()
        if existing:
            return existing
        credential = Credential(vendor=OPENAI, label="OpenAI (from OPENAI_API_KEY)")
        credential.is_default = not Credential.objects.filter(
            vendor=OPENAI, is_default=True
        ).exists()
        credential.secret = key
        credential.save()
        return credential

    def _superuser(self, username):
        User = get_user_model()
        password = os.environ.get("VOICEAGENTS_ADMIN_PASSWORD")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} exists.")
        elif password:
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Admin user {username!r} created from VOICEAGENTS_ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                "No admin user yet. Create one with: .venv/bin/python manage.py createsuperuser"
            )
