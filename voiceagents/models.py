"""Data model: credentials, agents, phone numbers, calls, transcripts and call timelines."""

from __future__ import annotations

import base64
import binascii
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from . import crypto
from .exceptions import UnknownReplyHandler
from .handlers import get_reply_handler, registered_names
from .providers import providers
from .templating import fill_placeholders
from .validators import (
    validate_api_base_url,
    validate_bcp47,
    validate_e164,
    validate_e164_list,
    validate_variables,
)

#: Secrets shorter than this show no characters at all in the admin hint.
MIN_SECRET_LEN_FOR_HINT = 12


class Vendor(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ELEVENLABS = "elevenlabs", "ElevenLabs"
    DEEPGRAM = "deepgram", "Deepgram"
    TWILIO = "twilio", "Twilio"
    TELNYX = "telnyx", "Telnyx"


class Carrier(models.TextChoices):
    TWILIO = "twilio", "Twilio"
    TELNYX = "telnyx", "Telnyx"


class ProviderChoice(models.TextChoices):
    OPENAI_REALTIME = "openai_realtime", "OpenAI Realtime"
    ELEVENLABS_CONVAI = "elevenlabs_convai", "ElevenLabs Conversational AI"
    PIPELINE = "pipeline", "Pipeline (STT → reply → TTS)"


class STTChoice(models.TextChoices):
    DEEPGRAM = "deepgram", "Deepgram (streaming)"
    WHISPER = "whisper", "OpenAI Whisper"


class TTSChoice(models.TextChoices):
    ELEVENLABS = "elevenlabs", "ElevenLabs"
    OPENAI_TTS = "openai_tts", "OpenAI TTS"


#: Which credential vendor each provider, STT and TTS choice needs.
VENDOR_FOR = {
    ProviderChoice.OPENAI_REALTIME: Vendor.OPENAI,
    ProviderChoice.ELEVENLABS_CONVAI: Vendor.ELEVENLABS,
    STTChoice.DEEPGRAM: Vendor.DEEPGRAM,
    STTChoice.WHISPER: Vendor.OPENAI,
    TTSChoice.ELEVENLABS: Vendor.ELEVENLABS,
    TTSChoice.OPENAI_TTS: Vendor.OPENAI,
}


#: Display names of the pipeline stage choices, for error messages.
STAGE_LABELS = {**dict(STTChoice.choices), **dict(TTSChoice.choices)}


class CredentialQuerySet(models.QuerySet):
    def default_for(self, vendor: str) -> Credential | None:
        """The account's credential for ``vendor``: the one marked default, else the only one."""
        candidates = list(self.filter(vendor=vendor).order_by("-is_default", "pk")[:2])
        if not candidates:
            return None
        if candidates[0].is_default or len(candidates) == 1:
            return candidates[0]
        return None


class Credential(models.Model):
    """An API key or auth token of one vendor account, encrypted at rest."""

    vendor = models.CharField(_("vendor"), max_length=20, choices=Vendor.choices)
    label = models.CharField(
        _("label"), max_length=100, help_text=_("Your name for it, e.g. 'Production OpenAI key'.")
    )
    encrypted_secret = models.TextField(
        _("encrypted secret"),
        editable=False,
        help_text=_("Fernet token; the clear secret is never stored."),
    )
    is_default = models.BooleanField(
        _("default for this vendor"),
        default=False,
        help_text=_(
            "Used by agents that choose no credential of this vendor (e.g. the pipeline's "
            "Deepgram and ElevenLabs keys). At most one per vendor."
        ),
    )
    account_sid = models.CharField(
        _("Twilio account SID"),
        max_length=64,
        blank=True,
        help_text=_("Twilio only: the account SID, e.g. 'AC0123…'. The secret is the auth token."),
    )
    connection_id = models.CharField(
        _("Telnyx connection ID"),
        max_length=64,
        blank=True,
        help_text=_("Telnyx only: the Call Control application (connection) ID."),
    )
    webhook_public_key = models.TextField(
        _("Telnyx webhook public key"),
        blank=True,
        help_text=_(
            "Telnyx only: the base64 Ed25519 public key from the Mission Control portal. "
            "During a key rotation, put one key per line; every listed key is accepted."
        ),
    )
    api_base_url = models.CharField(
        _("API base URL override"),
        max_length=300,
        blank=True,
        validators=[validate_api_base_url],
        help_text=_(
            "Leave blank for the vendor's public API. Set it for a proxy, a regional endpoint or "
            "a self-hosted gateway, e.g. 'https://eu.api.example.com'."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")
        ordering = ["vendor", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["vendor"],
                condition=Q(is_default=True),
                name="voiceagents_one_default_credential_per_vendor",
            )
        ]

    def __str__(self):
        return f"{self.get_vendor_display()}: {self.label}"

    @property
    def secret(self) -> str:
        """The clear secret; decrypted on every access, never cached on the instance."""
        if not self.encrypted_secret:
            return ""
        return crypto.decrypt(self.encrypted_secret)

    @secret.setter
    def secret(self, value: str) -> None:
        self.encrypted_secret = crypto.encrypt(value) if value else ""

    @property
    def has_secret(self) -> bool:
        return bool(self.encrypted_secret)

    def secret_hint(self) -> str:
        """A masked hint: at most the last four characters, none for short secrets."""
        try:
            value = self.secret
        except Exception:  # noqa: BLE001 - a hint must never break an admin page
            return "•••• (cannot be decrypted with the configured keys)"
        if not value:
            return ""
        if len(value) < MIN_SECRET_LEN_FOR_HINT:
            return "••••"
        return "••••" + value[-4:]

    def public_keys(self) -> list[str]:
        return [line.strip() for line in self.webhook_public_key.splitlines() if line.strip()]

    def clean(self):
        errors = {}
        if self.vendor != Vendor.TWILIO and self.account_sid:
            errors["account_sid"] = _("Only Twilio credentials have an account SID.")
        if self.vendor != Vendor.TELNYX:
            if self.connection_id:
                errors["connection_id"] = _("Only Telnyx credentials have a connection ID.")
            if self.webhook_public_key:
                errors["webhook_public_key"] = _("Only Telnyx credentials have a webhook key.")
        if self.vendor == Vendor.TWILIO and not self.account_sid:
            errors["account_sid"] = _("A Twilio credential needs the account SID (starts 'AC').")
        bad_keys = [key for key in self.public_keys() if not _is_ed25519_public_key(key)]
        if bad_keys:
            errors["webhook_public_key"] = _(
                "Each line must be a base64 Ed25519 public key (32 bytes), as Telnyx shows it."
            )
        if errors:
            raise ValidationError(errors)


def _is_ed25519_public_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _credential_field(verbose_name, help_text, vendor=None):
    """An agent's optional link to a credential (``vendor`` limits the admin's choices)."""
    return models.ForeignKey(
        Credential,
        verbose_name=verbose_name,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        limit_choices_to={"vendor": vendor} if vendor else None,
        help_text=help_text,
    )


class Agent(models.Model):
    """A voice agent: who answers, with which voice architecture, prompt and voice."""

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(
        _("slug"), max_length=100, unique=True, help_text=_("Stable identifier, e.g. 'front-desk'.")
    )
    enabled = models.BooleanField(
        _("enabled"), default=True, help_text=_("Disabled agents answer with a polite hang-up.")
    )
    provider = models.CharField(
        _("voice architecture"),
        max_length=30,
        choices=ProviderChoice.choices,
        default=ProviderChoice.OPENAI_REALTIME,
        help_text=_(
            "OpenAI Realtime: lowest latency, one speech-to-speech socket. ElevenLabs "
            "Conversational AI: best voice quality. Pipeline: your own STT → reply → TTS."
        ),
    )
    system_prompt = models.TextField(
        _("system prompt"),
        blank=True,
        help_text=_(
            "Instructions for the agent, e.g. 'You are a helpful assistant.' {name} placeholders "
            "are filled from the variables."
        ),
    )
    first_message = models.TextField(
        _("first message"),
        blank=True,
        help_text=_("Said as soon as the call connects, e.g. 'Hi, thanks for calling {company}!'"),
    )
    language = models.CharField(
        _("language"),
        max_length=35,
        default="en",
        validators=[validate_bcp47],
        help_text=_("BCP-47 language code, e.g. 'en', 'en-GB', 'es'."),
    )
    model = models.CharField(
        _("model"),
        max_length=100,
        blank=True,
        help_text=_(
            "Blank: the provider's default (OpenAI Realtime: gpt-4o-mini-realtime-preview). "
            "Any model name the vendor accepts is passed through."
        ),
    )
    voice = models.CharField(
        _("voice"),
        max_length=100,
        blank=True,
        help_text=_(
            "Blank: 'alloy' for OpenAI, 'rachel' for ElevenLabs. OpenAI voices: alloy, echo, "
            "fable, onyx, nova, shimmer. ElevenLabs: a voice ID or name, e.g. 'rachel', 'adam'."
        ),
    )
    variables = models.JSONField(
        _("variables"),
        default=dict,
        blank=True,
        validators=[validate_variables],
        help_text=_('Values for {name} placeholders, e.g. {"company": "Acme Dental"}.'),
    )
    openai_credential = _credential_field(
        _("OpenAI credential"),
        _("Needed by OpenAI Realtime. Blank: the default OpenAI credential."),
        vendor=Vendor.OPENAI,
    )
    elevenlabs_credential = _credential_field(
        _("ElevenLabs credential"),
        _("Needed by ElevenLabs ConvAI. Blank: the default ElevenLabs credential."),
        vendor=Vendor.ELEVENLABS,
    )
    stt_provider = models.CharField(
        _("speech-to-text"),
        max_length=20,
        choices=STTChoice.choices,
        blank=True,
        help_text=_("Pipeline only: Deepgram streaming or OpenAI Whisper."),
    )
    stt_credential = _credential_field(
        _("STT credential"),
        _("Pipeline only. Blank: the account's default Deepgram (or OpenAI) credential."),
    )
    stt_language = models.CharField(
        _("STT language"),
        max_length=35,
        blank=True,
        validators=[validate_bcp47],
        help_text=_("Pipeline only. Blank: the agent's language."),
    )
    tts_provider = models.CharField(
        _("text-to-speech"),
        max_length=20,
        choices=TTSChoice.choices,
        blank=True,
        help_text=_("Pipeline only: ElevenLabs or OpenAI TTS (24 kHz, resampled for the phone)."),
    )
    tts_credential = _credential_field(
        _("TTS credential"),
        _("Pipeline only. Blank: the account's default ElevenLabs (or OpenAI) credential."),
    )
    tts_voice = models.CharField(
        _("TTS voice"),
        max_length=100,
        blank=True,
        help_text=_("Pipeline only. Blank: 'rachel' (ElevenLabs) or 'alloy' (OpenAI TTS)."),
    )
    reply_handler = models.CharField(
        _("reply handler"),
        max_length=100,
        blank=True,
        help_text=_(
            "Pipeline only: a Python callable registered with @voiceagents.reply_handler(name) "
            "or VOICEAGENTS['REPLY_HANDLERS']. Leave blank to use the LLM prompt below."
        ),
    )
    reply_prompt = models.TextField(
        _("LLM reply prompt"),
        blank=True,
        help_text=_("Pipeline only: the system prompt of the LLM that writes each reply."),
    )
    reply_model = models.CharField(
        _("LLM reply model"),
        max_length=100,
        default="gpt-4o-mini",
        help_text=_("Pipeline only: the chat model for the LLM prompt, e.g. 'gpt-4o-mini'."),
    )
    reply_credential = _credential_field(
        _("LLM credential"),
        _("Pipeline only. Blank: the agent's (or the default) OpenAI credential."),
        vendor=Vendor.OPENAI,
    )
    provider_options = models.JSONField(
        _("provider options"),
        default=dict,
        blank=True,
        help_text=_(
            'Provider-specific options, e.g. {"turn_detection": "semantic_vad"} for OpenAI '
            "Realtime. Unknown keys are refused; vendor values are passed through."
        ),
    )
    record_calls = models.BooleanField(
        _("record calls"),
        default=True,
        help_text=_("Keep a stereo recording (caller left, agent right). Check local consent law."),
    )
    max_call_duration = models.PositiveIntegerField(
        _("max call duration (s)"),
        default=1800,
        validators=[MinValueValidator(10), MaxValueValidator(4 * 3600)],
        help_text=_("The call is ended politely after this many seconds."),
    )
    transfer_allowlist = models.JSONField(
        _("transfer allowlist"),
        default=list,
        blank=True,
        validators=[validate_e164_list],
        help_text=_('E.164 numbers calls may be transferred to, e.g. ["+14155550100"].'),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        ordering = ["name"]

    def __str__(self):
        return self.name

    # -- effective values -------------------------------------------------------------------

    @property
    def spec(self):
        return providers.get(self.provider)

    def effective_model(self) -> str:
        return self.model or self.spec.default_model

    def effective_voice(self) -> str:
        return self.voice or self.spec.default_voice

    def effective_tts_voice(self) -> str:
        if self.tts_voice:
            return self.tts_voice
        return "alloy" if self.tts_provider == TTSChoice.OPENAI_TTS else "rachel"

    def rendered_system_prompt(self, extra: dict | None = None) -> str:
        return fill_placeholders(self.system_prompt, {**(self.variables or {}), **(extra or {})})

    def rendered_first_message(self, extra: dict | None = None) -> str:
        return fill_placeholders(self.first_message, {**(self.variables or {}), **(extra or {})})

    # -- credentials ------------------------------------------------------------------------

    def resolve_credential(self, vendor: str, chosen: Credential | None) -> Credential | None:
        """The chosen credential, else the account's default credential of ``vendor``."""
        if chosen is not None:
            return chosen
        return Credential.objects.default_for(vendor)

    def credential_for(self, role: str) -> Credential | None:
        """Credential for 'provider', 'stt', 'tts' or 'reply', with the seed's fallbacks."""
        if role == "provider":
            if self.provider == ProviderChoice.OPENAI_REALTIME:
                return self.resolve_credential(Vendor.OPENAI, self.openai_credential)
            if self.provider == ProviderChoice.ELEVENLABS_CONVAI:
                return self.resolve_credential(Vendor.ELEVENLABS, self.elevenlabs_credential)
            return None
        if role == "stt" and self.stt_provider:
            vendor = VENDOR_FOR[self.stt_provider]
            chosen = self.stt_credential or (
                self.openai_credential if vendor == Vendor.OPENAI else None
            )
            return self.resolve_credential(vendor, chosen)
        if role == "tts" and self.tts_provider:
            vendor = VENDOR_FOR[self.tts_provider]
            fallback = {
                Vendor.OPENAI: self.openai_credential,
                Vendor.ELEVENLABS: self.elevenlabs_credential,
            }.get(vendor)
            return self.resolve_credential(vendor, self.tts_credential or fallback)
        if role == "reply":
            return self.resolve_credential(
                Vendor.OPENAI, self.reply_credential or self.openai_credential
            )
        return None

    # -- validation -------------------------------------------------------------------------

    def clean(self):
        errors: dict[str, list] = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        self._check_vendor(add, "openai_credential", self.openai_credential, Vendor.OPENAI)
        self._check_vendor(
            add, "elevenlabs_credential", self.elevenlabs_credential, Vendor.ELEVENLABS
        )
        self._check_vendor(add, "reply_credential", self.reply_credential, Vendor.OPENAI)

        if self.provider == ProviderChoice.OPENAI_REALTIME:
            if self.credential_for("provider") is None:
                add(
                    "openai_credential",
                    _(
                        "OpenAI Realtime needs an OpenAI credential: choose one here, or mark an "
                        "OpenAI credential as the default."
                    ),
                )
        elif self.provider == ProviderChoice.ELEVENLABS_CONVAI:
            if self.credential_for("provider") is None:
                add(
                    "elevenlabs_credential",
                    _(
                        "ElevenLabs Conversational AI needs an ElevenLabs credential: choose one "
                        "here, or mark an ElevenLabs credential as the default."
                    ),
                )
        elif self.provider == ProviderChoice.PIPELINE:
            self._clean_pipeline(add)

        if self.provider in providers:
            for message in self.spec.options.errors(self.provider_options):
                add("provider_options", message)
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def _check_vendor(add, field, credential, vendor):
        if credential is not None and credential.vendor != vendor:
            add(field, _("Choose a %(vendor)s credential.") % {"vendor": Vendor(vendor).label})

    def _clean_pipeline(self, add):
        if not self.stt_provider:
            add(
                "stt_provider",
                _("Pipeline mode needs a speech-to-text provider (Deepgram or Whisper)."),
            )
        else:
            self._clean_pipeline_stage(add, "stt", self.stt_provider, self.stt_credential)
        if not self.tts_provider:
            add(
                "tts_provider",
                _("Pipeline mode needs a text-to-speech provider (ElevenLabs or OpenAI TTS)."),
            )
        else:
            self._clean_pipeline_stage(add, "tts", self.tts_provider, self.tts_credential)

        if self.reply_handler and self.reply_prompt.strip():
            add("reply_handler", _("Choose a reply handler or write an LLM prompt, not both."))
        elif self.reply_handler:
            try:
                get_reply_handler(self.reply_handler)
            except UnknownReplyHandler:
                known = ", ".join(registered_names()) or _("none registered")
                add(
                    "reply_handler",
                    _("No reply handler named %(name)r. Registered: %(known)s.")
                    % {"name": self.reply_handler, "known": known},
                )
        elif self.reply_prompt.strip():
            if self.credential_for("reply") is None:
                add(
                    "reply_credential",
                    _("The LLM reply prompt needs an OpenAI credential: choose one, or a default."),
                )
        else:
            add(
                "reply_handler",
                _(
                    "Pipeline mode needs a reply handler (on_message): choose a registered "
                    "handler, or write an LLM reply prompt."
                ),
            )

    def _clean_pipeline_stage(self, add, stage, choice, chosen):
        vendor = VENDOR_FOR[choice]
        names = {"choice": STAGE_LABELS[choice], "vendor": Vendor(vendor).label}
        if chosen is not None and chosen.vendor != vendor:
            add(f"{stage}_credential", _("%(choice)s needs a %(vendor)s credential.") % names)
        elif self.credential_for(stage) is None:
            add(
                f"{stage}_credential",
                _(
                    "%(choice)s needs a %(vendor)s credential: choose one here, or mark a "
                    "%(vendor)s credential as the default."
                )
                % names,
            )


class TelnyxCodec(models.TextChoices):
    """The audio codec of a Telnyx number's media stream, both directions (protocols.md §3.4)."""

    L16 = "L16", _("L16: 16-bit linear PCM, 16 kHz (wideband)")
    PCMU = "PCMU", _("PCMU: G.711 µ-law, 8 kHz (narrowband)")


class PhoneNumber(models.Model):
    """A number at a carrier, and the agent that answers its inbound calls."""

    number = models.CharField(
        _("number"),
        max_length=16,
        unique=True,
        validators=[validate_e164],
        help_text=_("E.164 format, e.g. +14155550100."),
    )
    label = models.CharField(_("label"), max_length=100, blank=True)
    carrier = models.CharField(_("carrier"), max_length=20, choices=Carrier.choices)
    credential = models.ForeignKey(
        Credential,
        verbose_name=_("carrier credential"),
        on_delete=models.PROTECT,
        related_name="phone_numbers",
        limit_choices_to={"vendor__in": [Carrier.TWILIO, Carrier.TELNYX]},
        help_text=_("The Twilio or Telnyx account this number belongs to."),
    )
    agent = models.ForeignKey(
        Agent,
        verbose_name=_("inbound agent"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="phone_numbers",
        help_text=_("Answers inbound calls. Blank: callers hear a short apology."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    telnyx_codec = models.CharField(
        _("Telnyx media codec"),
        max_length=8,
        choices=TelnyxCodec.choices,
        default=TelnyxCodec.L16,
        help_text=_(
            "Telnyx only: the audio format of the call's media stream. L16 at 16 kHz carries "
            "wideband speech and is converted for the voice provider; PCMU at 8 kHz is phone "
            "quality and passes through to OpenAI Realtime unchanged."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("phone number")
        verbose_name_plural = _("phone numbers")
        ordering = ["number"]

    def __str__(self):
        return f"{self.number} ({self.get_carrier_display()})"

    def clean(self):
        if self.credential_id and self.carrier and self.credential.vendor != self.carrier:
            raise ValidationError(
                {
                    "credential": _("Choose a %(carrier)s credential.")
                    % {"carrier": Carrier(self.carrier).label}
                }
            )


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
    carrier = models.CharField(_("carrier"), max_length=20, choices=Carrier.choices)
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
    metrics = models.JSONField(
        _("metrics"),
        default=dict,
        blank=True,
        help_text=_("Frame counts, latencies and barge-ins, written at call end."),
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
    recording = models.FileField(_("recording"), upload_to=recording_upload_to, blank=True)
    recording_duration = models.DurationField(_("recording duration"), null=True, blank=True)

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
    TOOL_CALL = "tool_call", _("tool call")
    TRANSFER = "transfer", _("transfer")
    ERROR = "error", _("error")
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
        return f"{self.get_kind_display()} @ {self.at_ms} ms"


class ProcessedWebhookEvent(models.Model):
    """A carrier webhook event already acted on, so that a retried delivery is acted on once.

    Telnyx retries webhooks and may deliver one twice (protocols.md §3.1). The unique constraint
    makes the first process to insert the event's id the one that handles it, across processes;
    the others see the duplicate and only acknowledge it.
    """

    carrier = models.CharField(_("carrier"), max_length=20, choices=Carrier.choices)
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
