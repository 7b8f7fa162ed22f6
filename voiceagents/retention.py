"""Delete what callers said after ``VOICEAGENTS['RETENTION_DAYS']``: recordings and transcripts.

The call rows stay (times, status, end reason, metrics, costs), so reports still add up; their
recording and transcript are gone. ``None`` (the default) keeps everything. Run daily by the
``voiceagents.purge_expired_call_content`` task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from .conf import get_setting
from .exceptions import ConfigurationError
from .models import FINAL_STATUSES, Call, TranscriptEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    recordings: int = 0
    transcript_entries: int = 0


def retention_days() -> int | None:
    value = get_setting("RETENTION_DAYS", cast=int)
    if value in (None, ""):
        return None
    try:
        days = int(value)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"RETENTION_DAYS must be a number of days, not {value!r}") from err
    if days < 0:
        raise ConfigurationError(f"RETENTION_DAYS must not be negative, not {days}")
    return days


def purge_expired_call_content(now=None) -> Purged:
    """Delete the recordings and transcripts of ended calls older than the retention period.

    A recording file that cannot be deleted keeps its reference (and is tried again next run).
    """
    days = retention_days()
    if days is None:
        return Purged()
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Call.objects.filter(created_at__lt=cutoff, status__in=FINAL_STATUSES)
    entries, _ = TranscriptEntry.objects.filter(call__in=expired).delete()
    recordings = 0
    for call in expired.exclude(recording="").only("pk", "recording").iterator():
        try:
            call.recording.storage.delete(call.recording.name)
        except OSError:
            logger.exception("call %s: cannot delete the expired recording", call.pk)
            continue
        Call.objects.filter(pk=call.pk).update(recording="", recording_duration=None)
        recordings += 1
    if entries or recordings:
        logger.info(
            "retention (%d days): deleted %d recording(s) and %d transcript entr(ies)",
            days,
            recordings,
            entries,
        )
    return Purged(recordings=recordings, transcript_entries=entries)
