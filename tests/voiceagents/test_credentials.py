import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection

from voiceagents.exceptions import CredentialDecryptionError
from voiceagents.models import Credential

SECRET = "sk-live-THIS-MUST-NEVER-BE-STORED-IN-CLEAR-9f8e7d"


def _raw_rows():
    table = connection.ops.quote_name(Credential._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table name
        return cursor.fetchall()


def _make(vendor="openai", secret=SECRET, **fields):
    credential = Credential(vendor=vendor, label=f"{vendor} key", **fields)
    credential.secret = secret
    credential.save()
    return credential


@pytest.mark.django_db
def test_secret_is_not_stored_in_clear_text():
    _make()
    rows = _raw_rows()
    assert rows
    dump = repr(rows)
    assert SECRET not in dump
    assert SECRET[:-4] not in dump
    assert Credential.objects.get().secret == SECRET


@pytest.mark.django_db
def test_explicit_key_list_rotation_keeps_old_rows_readable(voiceagents_settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    voiceagents_settings["CREDENTIALS_KEY"] = old
    credential = _make()
    voiceagents_settings["CREDENTIALS_KEY"] = [new, old]
    assert Credential.objects.get(pk=credential.pk).secret == SECRET

    call_command("voiceagents_rotate_credentials", stdout=open("/dev/null", "w"))
    voiceagents_settings["CREDENTIALS_KEY"] = [new]
    assert Credential.objects.get(pk=credential.pk).secret == SECRET


@pytest.mark.django_db
def test_secret_key_rotation_with_fallbacks_keeps_old_rows_readable(settings):
    settings.VOICEAGENTS = {}
    settings.SECRET_KEY = "old-secret-key-" + "x" * 40
    credential = _make()
    settings.SECRET_KEY = "new-secret-key-" + "y" * 40
    settings.SECRET_KEY_FALLBACKS = ["old-secret-key-" + "x" * 40]
    assert Credential.objects.get(pk=credential.pk).secret == SECRET


@pytest.mark.django_db
def test_lost_key_gives_a_clear_error_not_garbage(voiceagents_settings):
    voiceagents_settings["CREDENTIALS_KEY"] = Fernet.generate_key().decode()
    credential = _make()
    voiceagents_settings["CREDENTIALS_KEY"] = Fernet.generate_key().decode()
    with pytest.raises(CredentialDecryptionError, match="fallback"):
        Credential.objects.get(pk=credential.pk).secret  # noqa: B018
    assert "cannot be decrypted" in Credential.objects.get(pk=credential.pk).secret_hint()


@pytest.mark.django_db
def test_rotation_command_reports_rows_it_cannot_decrypt(voiceagents_settings):
    voiceagents_settings["CREDENTIALS_KEY"] = Fernet.generate_key().decode()
    credential = _make()
    voiceagents_settings["CREDENTIALS_KEY"] = Fernet.generate_key().decode()
    with pytest.raises(CommandError, match=str(credential.pk)):
        call_command("voiceagents_rotate_credentials", stdout=open("/dev/null", "w"))


@pytest.mark.django_db
def test_secret_hint_shows_at_most_the_last_four_characters():
    assert _make().secret_hint() == "••••" + SECRET[-4:]
    assert _make(vendor="deepgram", secret="short").secret_hint() == "••••"


@pytest.mark.django_db
def test_only_one_default_credential_per_vendor():
    _make(is_default=True)
    with pytest.raises(IntegrityError):
        _make(is_default=True)


@pytest.mark.django_db
def test_default_for_prefers_the_marked_default_then_a_lone_credential():
    first = _make(vendor="deepgram")
    assert Credential.objects.default_for("deepgram") == first
    second = _make(vendor="deepgram")
    assert Credential.objects.default_for("deepgram") is None  # ambiguous
    second.is_default = True
    second.save()
    assert Credential.objects.default_for("deepgram") == second
