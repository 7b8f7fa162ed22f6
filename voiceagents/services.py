"""Plain functions behind the Celery tasks and admin actions (easy to test without Celery)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import uuid
import wave
from datetime import timedelta
from pathlib import Path

from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import costs
from .conf import get_setting
from .models import FINAL_STATUSES, Call, CallEvent, CallEventKind, CallStatus

logger = logging.getLogger(__name__)

#: The size of the header ``CallRecorder`` writes before any audio.
_WAV_HEADER = 44
#: Statuses of calls that some process believes are still live.
LIVE_STATUSES = (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)


def reconcile_stale_calls(now=None) -> int:
    """Fail calls that stayed live longer than their agent's maximum duration plus a grace period.

    A server process that crashes mid-call never writes the call's end; without this, such calls
    would show "in progress" forever. Returns how many calls were closed. Idempotent.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=int(get_setting("STALE_CALL_GRACE", cast=int)))
    default_max = timedelta(hours=4)
    closed = 0
    candidates = Call.objects.filter(status__in=LIVE_STATUSES).select_related("agent")
    for call in candidates.iterator():
        limit = timedelta(seconds=call.agent.max_call_duration) if call.agent else default_max
        if call.created_at + limit + grace > now:
            continue
        with transaction.atomic():
            updated = Call.objects.filter(pk=call.pk, status__in=LIVE_STATUSES).update(
                status=CallStatus.FAILED,
                ended_at=now,
                end_reason="stale",
                error="No end of call was recorded (server restart or lost stream?); closed by "
                "reconcile_stale_calls.",
                duration=(now - call.answered_at) if call.answered_at else None,
            )
            if updated:
                CallEvent.objects.create(
                    call=call,
                    kind=CallEventKind.STATUS,
                    data={"from": call.status, "to": CallStatus.FAILED, "reason": "stale"},
                )
                closed += 1
    if closed:
        logger.warning("closed %d stale calls", closed)
    return closed


def recover_lost_calls(now=None) -> int:
    """Close the live calls of server processes that stopped, keeping what they recorded.

    A process is gone when its heartbeat is older than ``HEARTBEAT_TIMEOUT`` seconds, or at once
    when it ran on this host and its pid no longer exists (a restart after ``kill -9``). Its
    calls fail with the end reason ``lost``, ending at its last heartbeat; the partial recording
    it left in ``RECORDING_TMP_DIR`` is repaired and attached. Then the temporary directory is
    tidied (``clean_recording_tmp``). Returns how many calls were closed. Idempotent, and safe
    to run in several processes at once.
    """
    from .models import WorkerHeartbeat

    now = now or timezone.now()
    timeout = timedelta(seconds=float(get_setting("HEARTBEAT_TIMEOUT", cast=float)))
    closed = 0
    for heartbeat in WorkerHeartbeat.objects.all():
        certain = _gone(heartbeat)
        if not certain and heartbeat.beat_at >= now - timeout:
            continue
        calls = Call.objects.filter(worker=heartbeat.worker, status__in=LIVE_STATUSES)
        for call_id in calls.values_list("pk", flat=True):
            closed += _close_lost(call_id, heartbeat, now, certain=certain)
        # Only if no call of it went live meanwhile (a heartbeat that was merely late).
        WorkerHeartbeat.objects.filter(pk=heartbeat.pk, beat_at=heartbeat.beat_at).delete()
    if closed:
        logger.warning("closed %d call(s) whose server process stopped", closed)
    clean_recording_tmp(now)
    return closed


def _gone(heartbeat) -> bool:
    """Whether ``heartbeat``'s process ran on this host and has stopped (an earlier pid, or one
    reused by this very process after a restart)."""
    from .call.ownership import worker_id

    if heartbeat.host != socket.gethostname()[:255]:
        return False
    if heartbeat.pid == os.getpid():
        return heartbeat.worker != worker_id()
    try:
        os.kill(heartbeat.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: some other user's live process
        return False
    return False


def _close_lost(call_id, heartbeat, now, *, certain: bool) -> int:
    """Close one call of a stopped process. Unless the process is certainly gone (``certain``),
    a recording still being written is left to ``clean_recording_tmp``: a process that only
    could not reach the database attaches the whole file itself when the call ends."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None or call.status not in LIVE_STATUSES or call.worker != heartbeat.worker:
            return 0  # closed meanwhile, by its session or another recovery
        previous = call.status
        call.status = CallStatus.FAILED
        call.ended_at = min(now, max(heartbeat.beat_at, call.answered_at or call.created_at))
        call.end_reason = "lost"
        call.error = (
            f"The server process running the call ({heartbeat.worker}) stopped; last heartbeat "
            f"at {heartbeat.beat_at:%Y-%m-%d %H:%M:%S} UTC. Transcript and recording are kept "
            "up to then."
        )
        if call.answered_at:
            call.duration = call.ended_at - call.answered_at
        if certain or _quiet(recording_tmp_path(call.pk), now):
            _attach_partial_recording(call)
        call.save()
        CallEvent.objects.create(
            call=call,
            kind=CallEventKind.STATUS,
            data={"from": previous, "to": CallStatus.FAILED, "reason": "lost"},
        )
    logger.warning("call %s closed as lost: %s", call.pk, call.error)
    return 1


def recording_tmp_dir() -> str:
    """Where calls write their recordings until they end (``RECORDING_TMP_DIR``)."""
    return str(get_setting("RECORDING_TMP_DIR", default="") or tempfile.gettempdir())


def recording_tmp_path(call_id) -> str:
    """The file the call's session records to (see ``CallSession``)."""
    return os.path.join(recording_tmp_dir(), f"voiceagents-{call_id}.wav")


def _quiet(path: str | Path, now) -> bool:
    """Whether nothing wrote to ``path`` for ``HEARTBEAT_TIMEOUT`` seconds (True if no file)."""
    try:
        age = now.timestamp() - os.stat(path).st_mtime
    except OSError:
        return True
    return age >= float(get_setting("HEARTBEAT_TIMEOUT", cast=float))


def _attach_partial_recording(call: Call) -> bool | None:
    """Repair the temporary recording a stopped process left for ``call`` and attach it (not
    saved: the caller saves ``call``), then remove it. True if attached, None if there is no
    file, False if it is kept because it could not be repaired or stored."""
    from .audio.recorder import repair_wav

    path = recording_tmp_path(call.pk)
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if size < _WAV_HEADER:
        # Killed before its header reached the disk (an older version's recorder): no audio.
        _remove(path, call)
        return None
    try:
        repair_wav(path)
        with wave.open(path, "rb") as wav:  # what a player will see
            duration_ms = wav.getnframes() * 1000.0 / wav.getframerate()
        store_recording(call, path)
    except (OSError, ValueError, EOFError, wave.Error) as err:
        logger.error(
            "call %s: cannot keep the recording %s (%s); left in place", call.pk, path, err
        )
        return False
    call.recording_duration = timedelta(milliseconds=duration_ms)
    return True


class _FinishedRecording(File):
    """A finished recording file, as ``Storage.save`` content.

    ``temporary_file_path`` is the hook Django's own temporary uploads use: a file system storage
    then moves the file into place (one ``rename`` on the same file system, a copy and a removal
    across file systems) instead of reading it and writing a copy. Other storages read it.
    """

    def temporary_file_path(self) -> str:
        return self.name


def store_recording(call: Call, path: str) -> None:
    """Store the finished WAV file at ``path`` as ``call.recording`` (the row is not saved) and
    remove the temporary file; OSError if it cannot be stored (the file is then left in place)."""
    with open(path, "rb") as handle:
        call.recording.save(f"{call.pk}.wav", _FinishedRecording(handle, path), save=False)
    _remove(path, call)


def restore_recording(call: Call, path: str, *, rolled_back: bool) -> None:
    """Put the recording that ``store_recording`` moved into storage back at ``path``, after the
    transaction that was to point ``call``'s row at it failed: recovery (``clean_recording_tmp``)
    attaches a temporary recording to a call that ended without one.

    ``rolled_back``: the transaction surely wrote nothing (it failed before its commit), so the
    stored copy, which no row names, goes. Otherwise (its commit failed, and may have happened
    unacknowledged) the stored copy stays and a link or copy of it comes back; recovery removes
    the temporary file again if the row does name the stored one.
    """
    name, storage = call.recording.name, call.recording.storage
    call.recording.name = None
    try:
        if not os.path.exists(path):  # else a storage that copies left it, or it never went
            _bring_back(storage, name, path, move=rolled_back)
        if rolled_back and storage.exists(name):
            storage.delete(name)
    except Exception:  # noqa: BLE001 - the stored copy is still there; say where
        logger.exception(
            "call %s: the recording stored as %s could not be put back at %s for recovery",
            call.pk,
            name,
            path,
        )


def _bring_back(storage, name: str, path: str, *, move: bool) -> None:
    """The stored file ``name`` at ``path`` again: renamed (``move``) or hard-linked when both
    are on this machine's file system, else copied."""
    local = _local_path(storage, name)
    if local is not None:
        try:
            if move:
                os.replace(local, path)
            else:
                os.link(local, path)
            return
        except OSError:  # another file system (or a path that is not a real file): copy
            pass
    with storage.open(name, "rb") as stored, open(path, "wb") as back:
        shutil.copyfileobj(stored, back)


def _local_path(storage, name: str) -> str | None:
    try:
        return storage.path(name)
    except NotImplementedError:  # not on this machine's file system
        return None


def _remove(path: str, call: Call) -> None:
    try:
        # Gone when a file system storage moved it in; still there when a storage copied it.
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("call %s: cannot remove the temporary recording %s", call.pk, path)


def clean_recording_tmp(now=None) -> int:
    """Attach or remove temporary recordings no process is writing any more; returns how many.

    A file is left alone while its call is live (its process, or the lost-call recovery, will
    deal with it) and for ``HEARTBEAT_TIMEOUT`` seconds after its last write. A file whose call
    ended without a recording is repaired and attached; any other is removed.
    """
    now = now or timezone.now()
    done = 0
    for path in Path(recording_tmp_dir()).glob("voiceagents-*.wav"):
        try:
            call_id = uuid.UUID(path.stem.removeprefix("voiceagents-"))
        except ValueError:
            continue  # not a name we gave
        if not _quiet(path, now):
            continue
        with transaction.atomic():
            call = Call.objects.select_for_update().filter(pk=call_id).first()
            if call is not None and call.status in LIVE_STATUSES:
                continue
            if call is not None and not call.recording:
                attached = _attach_partial_recording(call)
                if attached:
                    call.save(update_fields=["recording", "recording_duration"])
                    logger.warning("call %s: attached the recording its process left", call_id)
                if attached is not False:
                    done += 1
                continue  # else kept, to try again: it is all there is of the call's audio
            try:
                os.unlink(path)
            except OSError:
                continue
            logger.warning("removed the orphaned temporary recording %s", path)
        done += 1
    return done


def finalize_call(call_id) -> str:
    """Post-call work after the stream ended. Idempotent; safe when the cleanup was cut short.

    It reconciles the call's status and duration (a call whose session never wrote its end, a
    worker killed during cleanup, but whose carrier reported it over is closed here), fetches the
    provider's report where configured, stores the cost estimate (``voiceagents.costs``) and queues
    the customer webhook (``CALL_WEBHOOK_URL``).
    """
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            logger.warning("finalize_call: no call %s", call_id)
            return "missing"
        changed = []
        if call.status not in FINAL_STATUSES and call.stream_token_used_at and call.ended_at:
            call.status = CallStatus.COMPLETED
            changed.append("status")
        if call.duration is None and call.answered_at and call.ended_at:
            call.duration = call.ended_at - call.answered_at
            changed.append("duration")
        if call.is_final:
            call.cost = costs.estimate(call)
            changed.append("cost")
        if changed:
            call.save(update_fields=changed)
    # Outside the row lock: this is a request to the vendor.
    fetch_provider_report(call)
    _queue_carrier_record(call)
    _queue_call_webhook(call)
    return call.status


def _queue_carrier_record(call: Call) -> None:
    """Ask the carrier for its record of the call (price, final status) a minute from now: it
    rates calls some time after they end."""
    if call.carrier != "twilio" or not call.carrier_call_id:
        return
    if int(get_setting("CARRIER_RECORD_TRIES", cast=int)) <= 0:
        return
    from .tasks import reconcile_with_carrier

    if reconcile_with_carrier.app.conf.task_always_eager:
        # Eager Celery (the demo) would ask at once, before the carrier has rated the call, and
        # could not ask again later: the estimate stands.
        return
    try:
        reconcile_with_carrier.apply_async(args=[str(call.pk)], countdown=60)
    except Exception:
        logger.exception("call %s: cannot queue the carrier reconciliation", call.pk)


def _queue_call_webhook(call: Call) -> None:
    """Queue the customer webhook (``CALL_WEBHOOK_URL``) once the call is final."""
    if not get_setting("CALL_WEBHOOK_URL") or not call.is_final:
        return
    if CallEvent.objects.filter(call=call, kind=CallEventKind.WEBHOOK).exists():
        return  # finalize_call ran again (a retry): the webhook is on its way or was sent
    from .call_webhook import record
    from .tasks import deliver_call_webhook

    record(call.pk, "queued")
    try:
        deliver_call_webhook.delay(str(call.pk))
    except Exception:
        logger.exception("call %s: cannot queue the call webhook", call.pk)


def fetch_provider_report(call: Call) -> bool:
    """Store the provider's own record of the call in ``provider_report``; True if it did.

    Only for providers with a ``report_fetcher``, when ``<PROVIDER_ID>_FETCH_CONVERSATION`` is on
    (``ELEVENLABS_CONVAI_FETCH_CONVERSATION``), the provider's session id is known and nothing was
    stored yet. A failure is logged and never raised: the call itself is already recorded.
    """
    from django.utils.module_loading import import_string

    from .exceptions import VoiceAgentsError
    from .providers import providers

    spec = providers.find(call.provider)
    if spec is None or not spec.report_fetcher:
        return False
    if not call.provider_session_id or call.provider_report:
        return False
    if not get_setting("FETCH_CONVERSATION", vendor=spec.id, default=False, cast=bool):
        return False
    try:
        report = import_string(spec.report_fetcher)(call)
    except VoiceAgentsError as err:
        logger.warning("call %s: cannot fetch the %s report: %s", call.pk, spec.name, err)
        return False
    except Exception:
        logger.exception("call %s: fetching the %s report failed", call.pk, spec.name)
        return False
    call.provider_report = report or {}
    call.save(update_fields=["provider_report"])
    return bool(report)


def prune_processed_webhook_events(now=None) -> int:
    """Delete webhook-dedup records older than ``WEBHOOK_EVENT_RETENTION`` seconds.

    Carriers retry a webhook for minutes to hours, not days: a week of ids is ample to refuse
    every duplicate while keeping the table small.
    """
    from .models import ProcessedWebhookEvent

    now = now or timezone.now()
    keep = timedelta(seconds=int(get_setting("WEBHOOK_EVENT_RETENTION", cast=int)))
    deleted, _ = ProcessedWebhookEvent.objects.filter(received_at__lt=now - keep).delete()
    if deleted:
        logger.info("pruned %d processed webhook events", deleted)
    return deleted


def inbound_number(carrier: str, to_number: str):
    """The carrier's ``PhoneNumber`` that was dialled (with its agent and credential), or None.

    From this process's configuration cache when it holds it (``configcache``): a private copy,
    which the caller may change.
    """
    from . import configcache
    from .models import PhoneNumber

    def load():
        return (
            PhoneNumber.objects.select_related("agent", "credential")
            .filter(number=to_number, carrier=carrier)
            .first()
        )

    return configcache.models(("inbound_number", carrier, to_number), load)


def record_inbound_call(
    carrier: str,
    carrier_call_id: str,
    *,
    number,
    from_number: str,
    to_number: str,
    refusal: str = "",
) -> tuple[Call, bool]:
    """The ``Call`` row of an inbound call, created once per carrier call id; ``(call, created)``.

    Carriers retry webhooks, so a repeat returns the existing row (the unique constraint on the
    carrier call id also absorbs a race between two). A call no agent can take (``refusal`` says why) is stored
    as failed with the reason in ``end_reason``.
    """
    from .models import Direction

    agent = number.agent if number is not None else None
    defaults = {
        "direction": Direction.INBOUND,
        "from_number": (from_number or "")[:64],
        "to_number": (to_number or "")[:64],
        "phone_number": number,
        "agent": agent,
        "provider": agent.provider if agent is not None else "",
        "status": CallStatus.RINGING,
    }
    if refusal:
        defaults.update(status=CallStatus.FAILED, end_reason=refusal, ended_at=timezone.now())
    calls = Call.objects.select_related("agent")
    if not carrier_call_id:  # not covered by the unique constraint
        return calls.get_or_create(carrier=carrier, carrier_call_id="", defaults=defaults)
    # The first webhook of a call is the common case: insert first (no read before it); the
    # unique constraint turns a repeat, or a race with one, into the existing row.
    try:
        # A savepoint only inside a caller's transaction (where a failed INSERT must not spoil
        # it); alone, the INSERT is its own transaction, without a BEGIN and a COMMIT around it.
        guard = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
        with guard:
            call = Call.objects.create(carrier=carrier, carrier_call_id=carrier_call_id, **defaults)
        return call, True
    except IntegrityError:
        existing = calls.filter(carrier=carrier, carrier_call_id=carrier_call_id).first()
        if existing is None:
            raise  # not the unique constraint: something else is wrong
        return existing, False
