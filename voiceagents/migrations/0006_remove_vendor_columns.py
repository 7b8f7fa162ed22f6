"""Drop the vendor-specific columns, now copied into ``Credential.data``,
``PhoneNumber.carrier_data`` and ``Agent.credential`` (0005)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("voiceagents", "0005_vendor_columns_to_data"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="agent",
            name="elevenlabs_credential",
        ),
        migrations.RemoveField(
            model_name="agent",
            name="openai_credential",
        ),
        migrations.RemoveField(
            model_name="credential",
            name="account_sid",
        ),
        migrations.RemoveField(
            model_name="credential",
            name="connection_id",
        ),
        migrations.RemoveField(
            model_name="credential",
            name="webhook_public_key",
        ),
        migrations.RemoveField(
            model_name="phonenumber",
            name="telnyx_codec",
        ),
    ]
