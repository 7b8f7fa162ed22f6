"""Copy the vendor-specific columns into the registry-driven fields.

- ``Credential.account_sid`` (Twilio), ``connection_id`` and ``webhook_public_key`` (Telnyx) →
  ``Credential.data``;
- ``PhoneNumber.telnyx_codec`` → ``PhoneNumber.carrier_data["codec"]`` (Telnyx numbers);
- ``Agent.openai_credential``/``elevenlabs_credential`` → ``Agent.credential`` (the provider's),
  and into a pipeline stage's own credential where the old code fell back on them and the new
  fallback (the main credential, when of the stage's vendor) would not find the same one.

The vendor names below are the historical ones these columns belonged to, frozen with them.
Reversible: the columns are filled back from the new fields.
"""

from django.db import migrations

#: Credential columns of each vendor, as they were.
VENDOR_COLUMNS = {"twilio": ("account_sid",), "telnyx": ("connection_id", "webhook_public_key")}
#: The per-vendor agent credential columns, and which provider used each.
AGENT_COLUMNS = {"openai": "openai_credential_id", "elevenlabs": "elevenlabs_credential_id"}
PROVIDER_VENDORS = {"openai_realtime": "openai", "elevenlabs_convai": "elevenlabs"}
STAGE_VENDORS = {"whisper": "openai", "openai_tts": "openai", "elevenlabs": "elevenlabs"}


def _old_stage_fallbacks(agent) -> dict[str, int | None]:
    """Stage credential field → the credential the old ``credential_for`` fell back on."""
    by_vendor = {vendor: getattr(agent, column) for vendor, column in AGENT_COLUMNS.items()}
    stt_vendor = STAGE_VENDORS.get(agent.stt_provider)
    return {
        "stt_credential_id": by_vendor["openai"] if stt_vendor == "openai" else None,
        "tts_credential_id": by_vendor.get(STAGE_VENDORS.get(agent.tts_provider)),
        "reply_credential_id": by_vendor["openai"],
    }


def columns_to_data(apps, schema_editor):
    Agent = apps.get_model("voiceagents", "Agent")
    Credential = apps.get_model("voiceagents", "Credential")
    PhoneNumber = apps.get_model("voiceagents", "PhoneNumber")
    for credential in Credential.objects.filter(vendor__in=VENDOR_COLUMNS).iterator():
        values = {c: getattr(credential, c) for c in VENDOR_COLUMNS[credential.vendor]}
        credential.data = {**(credential.data or {}), **{k: v for k, v in values.items() if v}}
        credential.save(update_fields=["data"])
    for number in PhoneNumber.objects.filter(carrier="telnyx").iterator():
        number.carrier_data = {**(number.carrier_data or {}), "codec": number.telnyx_codec}
        number.save(update_fields=["carrier_data"])
    for agent in Agent.objects.iterator():
        own = PROVIDER_VENDORS.get(agent.provider)
        if own:
            # Only the provider's own vendor: a leftover credential of another vendor must not
            # become the one whose key is sent to this provider (blank: the default, as before).
            agent.credential_id = getattr(agent, AGENT_COLUMNS[own])
        else:
            agent.credential_id = next(
                (getattr(agent, c) for c in AGENT_COLUMNS.values() if getattr(agent, c)), None
            )
        for field, fallback in _old_stage_fallbacks(agent).items():
            if getattr(agent, field) is None and fallback and fallback != agent.credential_id:
                setattr(agent, field, fallback)
        agent.save(
            update_fields=["credential", "stt_credential", "tts_credential", "reply_credential"]
        )


def data_to_columns(apps, schema_editor):
    Agent = apps.get_model("voiceagents", "Agent")
    Credential = apps.get_model("voiceagents", "Credential")
    PhoneNumber = apps.get_model("voiceagents", "PhoneNumber")
    for credential in Credential.objects.filter(vendor__in=VENDOR_COLUMNS).iterator():
        for column in VENDOR_COLUMNS[credential.vendor]:
            setattr(credential, column, (credential.data or {}).get(column, ""))
        credential.save(update_fields=list(VENDOR_COLUMNS[credential.vendor]))
    for number in PhoneNumber.objects.filter(carrier="telnyx").iterator():
        number.telnyx_codec = (number.carrier_data or {}).get("codec") or "L16"
        number.save(update_fields=["telnyx_codec"])
    for agent in Agent.objects.select_related("credential").exclude(credential=None).iterator():
        column = AGENT_COLUMNS.get(agent.credential.vendor)
        if column and getattr(agent, column) is None:
            setattr(agent, column, agent.credential_id)
            agent.save(update_fields=[column.removesuffix("_id")])


class Migration(migrations.Migration):
    dependencies = [
        ("voiceagents", "0004_registry_fields"),
    ]

    operations = [migrations.RunPython(columns_to_data, data_to_columns)]
