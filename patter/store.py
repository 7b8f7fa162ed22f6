"""Write what a script serves into the project's models: credentials, the agent and its number.

``phone.serve()`` calls ``store()`` on every start. Rows are found by stable keys and updated,
never duplicated: the credentials by vendor and label, the agent by a slug made from the phone
number, the number by itself. Everything the script wrote is then visible (and editable until
the next start) in the admin like any other row. Synchronous ORM code: run it off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from voiceagents.models import Agent, Credential, PhoneNumber

    from .api import STT, TTS, AgentConfig, Patter

#: Label of the credentials made from ``Patter(...)``'s keys.
LABEL = "From the Patter script"


@dataclass(frozen=True)
class Stored:
    agent: Agent
    number: PhoneNumber


def agent_slug(number: str) -> str:
    """The slug of the agent answering ``number``: one script agent per number served."""
    return "patter-" + "".join(ch for ch in number if ch.isdigit())


def _credential(vendor: str, label: str, secret: str, data: dict | None = None) -> Credential:
    """The credential ``(vendor, label)``, created or brought up to date with ``secret``/``data``.

    ``data`` updates only its own keys: fields added in the admin (a Telnyx webhook public key)
    survive the next start.
    """
    from voiceagents.models import Credential

    credential = Credential.objects.filter(vendor=vendor, label=label).first()
    if credential is None:
        credential = Credential(vendor=vendor, label=label)
        # The default of its vendor unless the account already has one: agents with no
        # credential chosen (and the admin's suggestions) then find it.
        credential.is_default = not Credential.objects.filter(
            vendor=vendor, is_default=True
        ).exists()
    elif credential.secret == secret and all(
        credential.data.get(key) == value for key, value in (data or {}).items()
    ):
        return credential
    credential.secret = secret
    credential.data = {**(credential.data or {}), **(data or {})}
    credential.full_clean()
    credential.save()
    return credential


class _Credentials:
    """The script's credentials, one per vendor key given to ``Patter(...)``, made on demand."""

    def __init__(self, phone: Patter):
        self.phone = phone
        self._made: dict[str, Credential] = {}

    def of_vendor(self, vendor: str) -> Credential | None:
        if vendor not in self._made:
            key = self.phone._key_of(vendor)
            if not key:
                return None
            self._made[vendor] = _credential(vendor, LABEL, key)
        return self._made[vendor]

    def of_stage(self, stage: STT | TTS, vendor: str, kind: str) -> Credential:
        """A stage's own key: the constructor's credential when it is the same key."""
        if stage.api_key == self.phone._key_of(vendor):
            return self.of_vendor(vendor)
        return _credential(vendor, f"{LABEL} ({kind})", stage.api_key)


def _carrier(phone: Patter, credentials: _Credentials) -> tuple[str, Credential]:
    """The carrier of the number and its account credential: Twilio when its keys are given,
    else Telnyx."""
    from telephony.carriers import TELNYX, TELNYX_VENDOR, TWILIO, TWILIO_VENDOR

    twilio = None
    if phone.twilio_sid or phone.twilio_token:
        if not (phone.twilio_sid and phone.twilio_token):
            raise ValueError("Twilio needs both twilio_sid and twilio_token in Patter(...)")
        twilio = _credential(
            TWILIO_VENDOR.id, LABEL, phone.twilio_token, {"account_sid": phone.twilio_sid}
        )
    telnyx = credentials.of_vendor(TELNYX_VENDOR.id)
    if twilio is not None:
        return TWILIO.id, twilio
    if telnyx is not None:
        return TELNYX.id, telnyx
    raise ValueError(
        "phone.serve() needs a carrier account: twilio_sid and twilio_token, or telnyx_key, "
        "in Patter(...)"
    )


def _agent_fields(
    config: AgentConfig, credentials: _Credentials, handler_name: str
) -> dict[str, object]:
    from voiceagents.providers import providers
    from voiceagents.providers.stages import stt_stages, tts_stages

    spec = providers.get(config.provider)
    fields: dict[str, object] = {
        "provider": config.provider,
        "enabled": True,
        "system_prompt": config.system_prompt,
        "first_message": config.first_message,
        "language": config.language,
        "model": config.model,
        "voice": config.voice,
        "variables": config.variables,
        "credential": credentials.of_vendor(spec.vendor) if spec.vendor else None,
        # Blank unless the pipeline runs below: a script that moved from the pipeline to a
        # speech-to-speech provider leaves no stale stage behind.
        "stt_provider": "",
        "stt_language": "",
        "stt_credential": None,
        "tts_provider": "",
        "tts_voice": "",
        "tts_credential": None,
        "reply_handler": "",
        "reply_prompt": "",
    }
    if spec.stages:
        stt_vendor = stt_stages.get(config.stt.provider).vendor
        tts_vendor = tts_stages.get(config.tts.provider).vendor
        fields.update(
            stt_provider=config.stt.provider,
            stt_language=config.stt.language,
            stt_credential=(
                credentials.of_stage(config.stt, stt_vendor, "speech-to-text")
                if stt_vendor
                else None
            ),
            tts_provider=config.tts.provider,
            tts_voice=config.tts.voice,
            tts_credential=(
                credentials.of_stage(config.tts, tts_vendor, "text-to-speech")
                if tts_vendor
                else None
            ),
            reply_handler=handler_name,
        )
    return fields


@transaction.atomic
def store(phone: Patter, config: AgentConfig, handler_name: str) -> Stored:
    """Create or update the credentials, the agent and the number ``phone.serve()`` answers."""
    from voiceagents.models import Agent, PhoneNumber

    if not phone.phone_number:
        raise ValueError("phone.serve() needs phone_number in Patter(...)")
    credentials = _Credentials(phone)
    carrier, carrier_credential = _carrier(phone, credentials)
    # Every vendor key given is stored, so the admin can use it too (e.g. another agent).
    for vendor in ("openai", "elevenlabs", "deepgram"):
        credentials.of_vendor(vendor)

    slug = agent_slug(phone.phone_number)
    agent = Agent.objects.filter(slug=slug).first() or Agent(slug=slug)
    agent.name = agent.name or f"Script agent ({phone.phone_number})"
    for name, value in _agent_fields(config, credentials, handler_name).items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()

    number = PhoneNumber.objects.filter(number=phone.phone_number).first() or PhoneNumber(
        number=phone.phone_number, label=LABEL
    )
    number.carrier = carrier
    number.credential = carrier_credential
    number.agent = agent
    number.enabled = True
    number.full_clean()
    number.save()
    return Stored(agent=agent, number=number)
