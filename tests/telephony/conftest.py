"""Fixtures of the carrier tests: Twilio credentials, an agent and a Twilio number."""

from __future__ import annotations

import itertools

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from tests.fakes import twilio as fake
from voiceagents.models import Agent, Credential, PhoneNumber

_counter = itertools.count(1)


def create_credential(vendor: str, secret: str, **fields) -> Credential:
    credential = Credential(vendor=vendor, label=f"{vendor} {next(_counter)}", **fields)
    credential.secret = secret
    credential.save()
    return credential


@pytest.fixture
def make_twilio_credential(db):
    """``make_twilio_credential(token, account_sid=...)``: a saved Twilio credential."""

    def make(token: str = fake.AUTH_TOKEN, account_sid: str = fake.ACCOUNT_SID) -> Credential:
        return create_credential("twilio", token, data={"account_sid": account_sid})

    return make


@pytest.fixture
def twilio_credential(make_twilio_credential) -> Credential:
    return make_twilio_credential()


@pytest.fixture
def agent(db) -> Agent:
    openai = create_credential("openai", "sk-test-openai-key-0000")
    return Agent.objects.create(
        name="Front desk",
        slug="front-desk",
        provider="openai_realtime",
        credential=openai,
    )


@pytest.fixture
def twilio_number(twilio_credential, agent) -> PhoneNumber:
    """Our Twilio number ``fake.OUR_NUMBER``, answered by ``agent``."""
    return PhoneNumber.objects.create(
        number=fake.OUR_NUMBER, carrier="twilio", credential=twilio_credential, agent=agent
    )


@pytest.fixture(autouse=True)
def _no_twilio_secrets_from_the_environment(monkeypatch):
    """Tests configure every secret themselves; a developer's shell must not leak one in."""
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_SHARED_KEYS", "VOICEAGENTS_VERIFY_SIGNATURES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def close_db_connections():
    """Close the connections an async test opened through ``sync_to_async``.

    They live in asgiref's shared thread; left open, a later DB-less consumer test trips over them
    when Channels runs ``close_old_connections()`` in that thread. ``BaseDatabaseWrapper.close``
    because SQLite's own ``close()`` ignores in-memory test databases (the main thread's connection
    keeps the shared in-memory database alive).
    """
    yield
    await sync_to_async(_really_close_connections)()


def _really_close_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            BaseDatabaseWrapper.close(connection)
