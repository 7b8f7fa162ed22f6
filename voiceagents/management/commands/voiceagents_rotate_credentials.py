"""Re-encrypt every stored secret with the current (first) credentials key."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from voiceagents import crypto
from voiceagents.exceptions import CredentialDecryptionError
from voiceagents.models import Credential


class Command(BaseCommand):
    help = (
        "Re-encrypt all credential secrets with the newest key. Run it after adding a new key in "
        "front of VOICEAGENTS['CREDENTIALS_KEY'] (or rotating SECRET_KEY into "
        "SECRET_KEY_FALLBACKS); afterwards the old key can be removed."
    )

    def handle(self, *args, **options):
        rotated = 0
        failed = []
        with transaction.atomic():
            for credential in Credential.objects.select_for_update().exclude(encrypted_secret=""):
                try:
                    credential.encrypted_secret = crypto.reencrypt(credential.encrypted_secret)
                except CredentialDecryptionError:
                    failed.append(str(credential.pk))
                    continue
                credential.save(update_fields=["encrypted_secret", "updated_at"])
                rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} credential(s).")
        if failed:
            raise CommandError(
                "These credentials cannot be decrypted with any configured key and were left as "
                f"they are: {', '.join(failed)}"
            )
