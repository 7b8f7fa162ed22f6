"""Calls and what is recorded about them: transcripts, timelines and processed webhooks."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..carriers import carrier_choices
from .agents import Agent
from .numbers import PhoneNumber


class CallStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RINGING = "ringing", _("ringing")
    IN_PROGRESS = "in_progress", _("in progress")
    COMPLETED = "completed", _("completed")
    BUSY = "busy", _("busy")
    NO_ANSWER = "no_answer", _("no answer")
    FAILED = "failed", _("failed")
    CANCELED = "canceled", _("canceled")


#: Statuses after which a call never changes again.
FINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
    }
)


class Direction(models.TextChoices):
    INBOUND = "inbound", _("inbound")
    OUTBOUND = "outbound", _("outbound")


def clock(ms: float | None) -> str:
    """``ms`` from the call start as a clock reading: ``m:ss``, or ``h:mm:ss`` from an hour on."""
    if ms is None:
        return ""
    seconds = int(max(ms, 0) // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def recording_upload_to(call: Call, filename: str) -> str:
    return f"voiceagents/recordings/{call.created_at:%Y/%m/%d}/{call.pk}.wav"


class Call(models.Model):
    """One phone call, inbound or outbound, and everything we know about it."""

    id = models.UUIDField(_("ID"), primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(
        Agent,
        verbose_name=_("agent"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    phone_number = models.ForeignKey(
        PhoneNumber,
        verbose_name=_("phone number"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    carrier = models.CharField(_("carrier"), max_length=20, choices=carrier_choices)
    carrier_call_id = models.CharField(
        _("carrier call ID"),
        max_length=128,
        blank=True,
        help_text=_("Twilio CallSid or Telnyx call_control_id."),
    )
    stream_id = models.CharField(_("media stream ID"), max_length=128, blank=True)
    direction = models.CharField(_("direction"), max_length=10, choices=Direction.choices)
    from_number = models.CharField(_("from"), max_length=64, blank=True)
    to_number = models.CharField(_("to"), max_length=64, blank=True)
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=CallStatus.choices,
        default=CallStatus.QUEUED,
        db_index=True,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    duration = models.DurationField(_("duration"), null=True, blank=True)
    end_reason = models.CharField(
        _("end reason"),
        max_length=100,
        blank=True,
        help_text=_("Why the call ended, e.g. 'caller_hangup', 'max_duration', 'provider_error'."),
    )
    error = models.TextField(_("error"), blank=True)
    provider = models.CharField(_("voice provider"), max_length=30, blank=True)
    provider_session_id = models.CharField(
        _("provider session ID"),
        max_length=128,
        blank=True,
        help_text=_(
            "The provider's own id of the conversation: the OpenAI Realtime session or the "
            "ElevenLabs conversation."
        ),
    )
    provider_report = models.JSONField(
        _("provider report"),
        default=dict,
        blank=True,
        help_text=_(
            "What the provider reported after the call (ElevenLabs transcript and analysis, when "
            "VOICEAGENTS['ELEVENLABS_CONVAI_FETCH_CONVERSATION'] is on)."
        ),
    )
    metrics = models.JSONField(
        _("metrics"),
        default=dict,
        blank=True,
        help_text=_("Frame counts, latencies and barge-ins, written at call end."),
    )
    cost = models.JSONField(
        _("cost estimate"),
        default=dict,
        blank=True,
        help_text=_(
            "What the call cost, estimated after it ended: the carrier's minutes and each AI "
            "service's usage at the rates of VOICEAGENTS['COST_RATES'] (or the carrier's own "
            "price when it reports one)."
        ),
    )
    stream_token_used_at = models.DateTimeField(
        _("media stream authenticated"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the single-use stream token was spent; a second use is refused."),
    )
    carrier_status_seq = models.IntegerField(
        _("last carrier status sequence"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Sequence number of the newest status callback applied (callbacks can arrive out of order)."
        ),
    )
    answered_by = models.CharField(
        _("answered by"),
        max_length=40,
        blank=True,
        help_text=_(
            "Outbound calls: the carrier's answering-machine detection result ('human', "
            "'machine_end_beep', 'machine'...); blank when not detected."
        ),
    )
    outbound_options = models.JSONField(
        _("outbound options"),
        default=dict,
        blank=True,
        editable=False,
        help_text=_(
            "Outbound calls: what the call was placed with (first message, variables, AMD)."
        ),
    )
    recording = models.FileField(_("recording"), upload_to=recording_upload_to, blank=True)
    recording_duration = models.DurationField(_("recording duration"), null=True, blank=True)
    worker = models.CharField(
        _("server process"),
        max_length=100,
        blank=True,
        db_index=True,
        help_text=_(
            "The server process that ran the call's audio. If that process stops (a crash or a "
            "restart), the call is closed as lost and its partial recording kept."
        ),
    )

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "carrier_call_id"],
                condition=~Q(carrier_call_id=""),
                name="voiceagents_unique_carrier_call_id",
            )
        ]

    def __str__(self):
        other = self.from_number if self.direction == Direction.INBOUND else self.to_number
        return f"{self.get_direction_display()} call {other or self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class TranscriptRole(models.TextChoices):
    CALLER = "caller", _("caller")
    AGENT = "agent", _("agent")
    TOOL = "tool", _("tool")
    SYSTEM = "system", _("system")


class TranscriptEntry(models.Model):
    """One turn of the conversation, in conversation order."""

    call = models.ForeignKey(
        Call, verbose_name=_("call"), on_delete=models.CASCADE, related_name="transcript"
    )
    seq = models.PositiveIntegerField(_("sequence"))
    role = models.CharField(_("role"), max_length=10, choices=TranscriptRole.choices)
    text = models.TextField(_("text"), blank=True)
    start_ms = models.PositiveIntegerField(
        _("start (ms)"), null=True, blank=True, help_text=_("From the call start.")
    )
    end_ms = models.PositiveIntegerField(
        _("end (ms)"), null=True, blank=True, help_text=_("From the call start.")
    )
    interrupted = models.BooleanField(
        _("interrupted"),
        default=False,
        help_text=_("The caller cut the agent off during this turn."),
    )

    class Meta:
        verbose_name = _("transcript entry")
        verbose_name_plural = _("transcript entries")
        ordering = ["call", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["call", "seq"], name="voiceagents_transcript_seq")
        ]

    def __str__(self):
        return f"{self.get_role_display()}: {self.text[:60]}"


class CallEventKind(models.TextChoices):
    STATUS = "status", _("status change")
    DTMF = "dtmf", _("DTMF digit")
    BARGE_IN = "barge_in", _("barge-in")
    FALSE_INTERRUPTION = "false_interruption", _("false interruption")
    TOOL_CALL = "tool_call", _("tool call")
    TRANSFER = "transfer", _("transfer")
    ERROR = "error", _("error")
    WEBHOOK = "webhook", _("customer webhook")
    OTHER = "other", _("other")


class CallEvent(models.Model):
    """One point on a call's timeline (DTMF, barge-in, tool call, error, status change)."""

    call = models.ForeignKey(
        Call, verbose_name=_("call"), on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=CallEventKind.choices)
    at_ms = models.PositiveIntegerField(
        _("at (ms)"), null=True, blank=True, help_text=_("From the call start.")
    )
    data = models.JSONField(_("data"), default=dict, blank=True)
    created_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("call event")
        verbose_name_plural = _("call events")
        ordering = ["call", "created_at", "pk"]

    def __str__(self):
        if self.at_ms is None:
            return str(self.get_kind_display())
        return f"{self.get_kind_display()} at {clock(self.at_ms)}"


class ProcessedWebhookEvent(models.Model):
    """A carrier webhook event already acted on, so that a retried delivery is acted on once.

    Telnyx retries webhooks and may deliver one twice (docs/carriers/telnyx.md). The unique
    constraint makes the first process to insert the event's id the one that handles it, across
    processes; the others see the duplicate and only acknowledge it.
    """

    carrier = models.CharField(_("carrier"), max_length=20, choices=carrier_choices)
    event_id = models.CharField(
        _("event ID"), max_length=128, help_text=_("The carrier's event id, e.g. Telnyx data.id.")
    )
    event_type = models.CharField(
        _("event type"), max_length=64, blank=True, help_text=_("e.g. 'call.initiated'.")
    )
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("processed webhook event")
        verbose_name_plural = _("processed webhook events")
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "event_id"], name="voiceagents_unique_webhook_event"
            )
        ]

    def __str__(self):
        return f"{self.get_carrier_display()} {self.event_type} {self.event_id}"


class WorkerHeartbeat(models.Model):
    """A server process that runs calls, and when it last said it was alive.

    Each process with live calls updates its row every ``HEARTBEAT_INTERVAL`` seconds
    (``voiceagents.call.ownership``); ``recover_lost_calls`` closes the calls of a process whose
    row went quiet, or whose process is gone from this host.
    """

    worker = models.CharField(_("server process"), max_length=100, unique=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process ID"))
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    beat_at = models.DateTimeField(_("last heartbeat"), db_index=True)
    calls = models.PositiveIntegerField(_("live calls"), default=0)

    class Meta:
        verbose_name = _("server heartbeat")
        verbose_name_plural = _("server heartbeats")

    def __str__(self):
        return self.worker
