"""Data model: credentials, agents, phone numbers, calls, transcripts and call timelines.

Split by family; everything is importable from ``voiceagents.models`` as before. Vendor-specific
values live in per-vendor JSON (``Credential.data``, ``PhoneNumber.carrier_data``) validated by
the registries' specs, so no model knows a vendor by name.
"""

from .agents import Agent
from .calls import (
    FINAL_STATUSES,
    Call,
    CallEvent,
    CallEventKind,
    CallStatus,
    Direction,
    ProcessedWebhookEvent,
    TranscriptEntry,
    TranscriptRole,
    WorkerHeartbeat,
    recording_upload_to,
)
from .credentials import MIN_SECRET_LEN_FOR_HINT, Credential, CredentialQuerySet
from .numbers import PhoneNumber

__all__ = [
    "FINAL_STATUSES",
    "MIN_SECRET_LEN_FOR_HINT",
    "Agent",
    "Call",
    "CallEvent",
    "CallEventKind",
    "CallStatus",
    "Credential",
    "CredentialQuerySet",
    "Direction",
    "PhoneNumber",
    "ProcessedWebhookEvent",
    "TranscriptEntry",
    "TranscriptRole",
    "WorkerHeartbeat",
    "recording_upload_to",
]
