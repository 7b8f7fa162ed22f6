"""Model signal handlers: recordings leave storage with their call."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Call

logger = logging.getLogger(__name__)


@receiver(post_delete, sender=Call, dispatch_uid="voiceagents_delete_call_recording")
def delete_recording_with_call(sender, instance: Call, **kwargs):
    """Deleting a call deletes its recording file: voice data must not outlive its record.

    Done after the transaction commits, so a rolled-back delete keeps the file.
    """
    if not instance.recording:
        return
    storage, name = instance.recording.storage, instance.recording.name

    def remove():
        try:
            storage.delete(name)
        except OSError:
            logger.exception("cannot delete the recording of deleted call %s", instance.pk)

    transaction.on_commit(remove)
