"""The registry migrations (0004-0006) applied to a database built by the old ones, with rows in it.

Rows are created with the historical models of 0003 (vendor columns, one credential field per
vendor), then the database is migrated forward and read with today's models, then back again.
Runs on SQLite by default and on PostgreSQL in the integration run (DATABASE_URL).
"""

from __future__ import annotations

import base64

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from voiceagents.models import Agent, Credential, PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("voiceagents", "0003_telnyx_codec_and_webhook_events")]
TWILIO_SID = "AC" + "0123456789abcdef" * 2
KEYS = [base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]


def migrate(targets):
    """Migrate to ``targets``; the historical apps registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes("voiceagents")


@pytest.fixture
def old_database():
    """The schema of 0003; whatever the test does, the database ends at the latest migration."""
    apps = migrate(BEFORE)
    yield apps
    migrate(latest())


def _old_rows(apps) -> dict:
    Credential = apps.get_model("voiceagents", "Credential")
    Agent = apps.get_model("voiceagents", "Agent")
    PhoneNumber = apps.get_model("voiceagents", "PhoneNumber")

    def credential(vendor, label, **columns):
        return Credential.objects.create(
            vendor=vendor, label=label, encrypted_secret="token", **columns
        )

    rows = {
        "openai": credential("openai", "openai"),
        "elevenlabs": credential("elevenlabs", "elevenlabs"),
        "twilio": credential("twilio", "twilio", account_sid=TWILIO_SID),
        "telnyx": credential(
            "telnyx",
            "telnyx",
            connection_id="1494404757140276705",
            webhook_public_key="\n".join(KEYS),
        ),
        "bare_telnyx": credential("telnyx", "bare telnyx"),
        # Second keys: no vendor has a lone (hence default) credential to fall back on.
        "other_openai": credential("openai", "other openai"),
        "other_elevenlabs": credential("elevenlabs", "other elevenlabs"),
    }
    rows["realtime"] = Agent.objects.create(
        name="realtime", slug="realtime", provider="openai_realtime",
        openai_credential=rows["openai"], elevenlabs_credential=rows["elevenlabs"],
    )  # fmt: skip
    # On the default OpenAI key, with an ElevenLabs credential left over from another mode.
    rows["realtime_default"] = Agent.objects.create(
        name="realtime default", slug="realtime-default", provider="openai_realtime",
        elevenlabs_credential=rows["elevenlabs"],
    )  # fmt: skip
    rows["convai"] = Agent.objects.create(
        name="convai", slug="convai", provider="elevenlabs_convai",
        openai_credential=rows["openai"], elevenlabs_credential=rows["elevenlabs"],
    )  # fmt: skip
    # Whisper and the LLM fell back on openai_credential, ElevenLabs TTS on elevenlabs_credential.
    rows["pipeline"] = Agent.objects.create(
        name="pipeline", slug="pipeline", provider="pipeline",
        stt_provider="whisper", tts_provider="elevenlabs", reply_prompt="Be brief.",
        openai_credential=rows["openai"], elevenlabs_credential=rows["elevenlabs"],
    )  # fmt: skip
    rows["twilio_number"] = PhoneNumber.objects.create(
        number="+14155550100", carrier="twilio", credential=rows["twilio"]
    )
    rows["pcmu_number"] = PhoneNumber.objects.create(
        number="+14155550101", carrier="telnyx", credential=rows["telnyx"], telnyx_codec="PCMU"
    )
    return rows


def test_old_columns_reach_the_new_fields_and_come_back(old_database):
    old = _old_rows(old_database)

    migrate(latest())

    def credential(key):
        return Credential.objects.get(pk=old[key].pk)

    assert credential("twilio").data == {"account_sid": TWILIO_SID}
    assert credential("telnyx").data == {
        "connection_id": "1494404757140276705",
        "webhook_public_key": "\n".join(KEYS),
    }
    assert credential("bare_telnyx").data == {}
    assert credential("openai").data == {}
    for key in ("twilio", "telnyx", "openai"):
        credential(key).full_clean()  # the copied values pass today's vendor specs
    assert PhoneNumber.objects.get(pk=old["twilio_number"].pk).carrier_data == {}
    assert PhoneNumber.objects.get(pk=old["pcmu_number"].pk).carrier_data == {"codec": "PCMU"}
    # Twilio and Telnyx lookups find the rows by their JSON keys.
    assert list(Credential.objects.filter(data__account_sid=TWILIO_SID)) == [credential("twilio")]
    assert list(Credential.objects.filter(data__has_key="webhook_public_key")) == [
        credential("telnyx")
    ]

    realtime, convai, pipeline = (
        Agent.objects.get(slug=s) for s in ("realtime", "convai", "pipeline")
    )
    assert realtime.credential == credential("openai")
    assert convai.credential == credential("elevenlabs")
    # Another vendor's leftover key is never the one sent to the provider.
    assert Agent.objects.get(slug="realtime-default").credential is None
    # Every role resolves to the credential the old fallbacks chose.
    assert pipeline.credential_for("stt") == credential("openai")
    assert pipeline.credential_for("tts") == credential("elevenlabs")
    assert pipeline.credential_for("reply") == credential("openai")

    apps = migrate(BEFORE)

    OldCredential = apps.get_model("voiceagents", "Credential")
    OldAgent = apps.get_model("voiceagents", "Agent")
    OldNumber = apps.get_model("voiceagents", "PhoneNumber")
    assert OldCredential.objects.get(pk=old["twilio"].pk).account_sid == TWILIO_SID
    telnyx = OldCredential.objects.get(pk=old["telnyx"].pk)
    assert (telnyx.connection_id, telnyx.webhook_public_key) == (
        "1494404757140276705",
        "\n".join(KEYS),
    )
    assert OldNumber.objects.get(pk=old["pcmu_number"].pk).telnyx_codec == "PCMU"
    assert OldAgent.objects.get(slug="realtime").openai_credential_id == old["openai"].pk
    assert OldAgent.objects.get(slug="convai").elevenlabs_credential_id == old["elevenlabs"].pk


def test_convai_agent_id_option_becomes_the_remote_agent_id_and_comes_back():
    """0007: the old ``agent_id`` option moves to ``remote_agent_id``; ``audio_format`` goes."""
    before = [("voiceagents", "0006_remove_vendor_columns")]
    apps = migrate(before)
    try:
        OldAgent = apps.get_model("voiceagents", "Agent")
        old = OldAgent.objects.create(
            name="convai", slug="convai-options", provider="elevenlabs_convai",
            provider_options={"agent_id": "agent_01abc", "audio_format": "ulaw_8000",
                              "dynamic_variables": {"shop": "Acme"}},
        )  # fmt: skip
        untouched = OldAgent.objects.create(
            name="realtime", slug="realtime-options", provider="openai_realtime",
            provider_options={"audio_format": "pcmu"},
        )  # fmt: skip

        migrate(latest())

        agent = Agent.objects.get(pk=old.pk)
        assert agent.remote_agent_id == "agent_01abc"
        assert agent.provider_options == {"dynamic_variables": {"shop": "Acme"}}
        assert Agent.objects.get(pk=untouched.pk).provider_options == {"audio_format": "pcmu"}

        apps = migrate(before)
        OldAgent = apps.get_model("voiceagents", "Agent")
        assert OldAgent.objects.get(pk=old.pk).provider_options == {
            "dynamic_variables": {"shop": "Acme"},
            "agent_id": "agent_01abc",
        }
    finally:
        migrate(latest())
