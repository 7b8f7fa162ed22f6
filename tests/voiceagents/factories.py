"""Plain helpers that create credentials, agents, phone numbers and calls for tests.

Each helper takes keyword overrides for any model field and fills the rest with valid,
unique defaults, so a test states only what it is about.
"""

from __future__ import annotations

import io
import itertools
import wave

from django.core.files.base import ContentFile

from voiceagents.models import (
    Agent,
    Call,
    CallEvent,
    CallStatus,
    Credential,
    Direction,
    PhoneNumber,
    TranscriptEntry,
)
from voiceagents.vendors import vendors

_counter = itertools.count(1)

#: Twilio account SIDs are 'AC' and 32 hex digits.
TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def make_credential(vendor: str = "openai", *, secret: str | None = None, **fields) -> Credential:
    """A saved credential of ``vendor`` with an encrypted ``secret``."""
    n = next(_counter)
    fields.setdefault("label", f"{vendors.get(vendor).name} key {n}")
    if vendor == "twilio":
        fields.setdefault("data", {"account_sid": TWILIO_ACCOUNT_SID})
    if vendor == "telnyx":
        fields.setdefault("data", {"connection_id": f"{1000000 + n}"})
    credential = Credential(vendor=vendor, **fields)
    credential.secret = secret if secret is not None else f"test-{vendor}-secret-{n:04d}-padding"
    credential.full_clean()
    credential.save()
    return credential


def make_agent(**fields) -> Agent:
    """A saved OpenAI Realtime agent; creates an OpenAI credential unless one is given."""
    n = next(_counter)
    fields.setdefault("name", f"Agent {n}")
    fields.setdefault("slug", f"agent-{n}")
    fields.setdefault("provider", "openai_realtime")
    if fields["provider"] == "openai_realtime" and "credential" not in fields:
        fields["credential"] = make_credential("openai")
    agent = Agent(**fields)
    agent.full_clean()
    agent.save()
    return agent


def make_phone_number(carrier: str = "twilio", **fields) -> PhoneNumber:
    """A saved phone number at ``carrier``; creates the carrier credential unless one is given."""
    n = next(_counter)
    fields.setdefault("number", f"+1415555{n:04d}")
    if "credential" not in fields:
        fields["credential"] = make_credential(carrier)
    number = PhoneNumber(carrier=carrier, **fields)
    number.full_clean()
    number.save()
    return number


def make_call(**fields) -> Call:
    """A saved call; inbound, completed, at Twilio unless told otherwise."""
    n = next(_counter)
    fields.setdefault("carrier", "twilio")
    fields.setdefault("direction", Direction.INBOUND)
    fields.setdefault("status", CallStatus.COMPLETED)
    fields.setdefault("from_number", f"+1202555{n:04d}")
    fields.setdefault("to_number", f"+1415555{n:04d}")
    fields.setdefault("carrier_call_id", f"CA{n:032x}")
    return Call.objects.create(**fields)


def add_transcript(call: Call, *entries: dict) -> list[TranscriptEntry]:
    """Transcript entries of ``call``, each a dict of TranscriptEntry fields (``seq`` required)."""
    return [TranscriptEntry.objects.create(call=call, **entry) for entry in entries]


def add_event(call: Call, kind: str, **fields) -> CallEvent:
    return CallEvent.objects.create(call=call, kind=kind, **fields)


def wav_bytes(*, frames: int = 160, rate: int = 8000, channels: int = 2) -> bytes:
    """A small valid PCM16 WAV file (silence with a short ramp), stereo by default."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        samples = b"".join(
            ((i * 97) % 2000 - 1000).to_bytes(2, "little", signed=True) * channels
            for i in range(frames)
        )
        wav.writeframes(samples)
    return buffer.getvalue()


def attach_recording(call: Call, data: bytes | None = None) -> bytes:
    """Store ``data`` (default: :func:`wav_bytes`) as the call's recording; returns the bytes."""
    data = data if data is not None else wav_bytes()
    call.recording.save("recording.wav", ContentFile(data), save=True)
    return data
