"""Agents: who answers, with which voice provider (or pipeline stages), prompt and credentials.

What an agent needs is read from the registries: the provider's spec names the vendor of the
main credential and the pipeline stages; each stage's spec names its own vendor. Nothing here
knows a vendor by name.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..exceptions import UnknownReplyHandler
from ..handlers import get_reply_handler, registered_names
from ..providers import STAGES, provider_choices, providers
from ..providers.specs import ProviderSpec, ServiceSpec, StageSpec
from ..providers.stages import reply_choices, stt_choices, tts_choices
from ..templating import fill_placeholders
from ..validators import validate_bcp47, validate_e164_list, validate_variables
from ..vendors import vendors
from .credentials import Credential


def _credential_field(verbose_name, help_text):
    """An agent's optional link to a credential; its vendor is checked against the spec."""
    return models.ForeignKey(
        Credential,
        verbose_name=verbose_name,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=help_text,
    )


def _stage_fields(verbose_name, credential_name, choices, help_text, **options):
    """A pipeline stage's choice field and its optional own credential."""
    choice = models.CharField(
        verbose_name, max_length=20, choices=choices, blank=True, help_text=help_text, **options
    )
    credential = _credential_field(
        credential_name,
        _("Pipeline only. Blank: the agent's credential if of the same vendor, else the default."),
    )
    return choice, credential


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
        choices=provider_choices,
        default="openai_realtime",
        help_text=_(
            "A speech-to-speech provider (one socket, lowest latency), or the pipeline: your own "
            "speech-to-text → reply → text-to-speech."
        ),
    )
    credential = _credential_field(
        _("credential"),
        _(
            "The provider's account (e.g. an OpenAI key for OpenAI Realtime). Blank: the default "
            "credential of the provider's vendor. Pipeline stages of the same vendor use it too."
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
            "Blank: the provider's default (OpenAI Realtime: gpt-4o-mini-realtime-preview; "
            "ElevenLabs: the ElevenLabs agent's own). For ElevenLabs this is the voice model, "
            "e.g. 'eleven_flash_v2_5'. Any model name the vendor accepts is passed through."
        ),
    )
    voice = models.CharField(
        _("voice"),
        max_length=100,
        blank=True,
        help_text=_(
            "Blank: the provider's default ('alloy' for OpenAI, 'rachel' for ElevenLabs). "
            "ElevenLabs takes a voice ID or a premade voice name such as 'rachel'; other "
            "providers' voice names are passed through."
        ),
    )
    variables = models.JSONField(
        _("variables"),
        default=dict,
        blank=True,
        validators=[validate_variables],
        help_text=_('Values for {name} placeholders, e.g. {"company": "Acme Dental"}.'),
    )
    stt_provider, stt_credential = _stage_fields(
        _("speech-to-text"),
        _("STT credential"),
        stt_choices,
        _("Pipeline only: the service that transcribes the caller."),
    )
    stt_language = models.CharField(
        _("STT language"),
        max_length=35,
        blank=True,
        validators=[validate_bcp47],
        help_text=_("Pipeline only. Blank: the agent's language."),
    )
    tts_provider, tts_credential = _stage_fields(
        _("text-to-speech"),
        _("TTS credential"),
        tts_choices,
        _("Pipeline only (resampled for the phone)."),
    )
    tts_voice = models.CharField(
        _("TTS voice"),
        max_length=100,
        blank=True,
        help_text=_("Pipeline only. Blank: the text-to-speech provider's default voice."),
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
    reply_provider, reply_credential = _stage_fields(
        _("LLM provider"),
        _("LLM credential"),
        reply_choices,
        _("Pipeline only: the service that runs the LLM reply prompt."),
        default="openai_chat",
    )
    reply_model = models.CharField(
        _("LLM reply model"),
        max_length=100,
        blank=True,
        help_text=_(
            "Pipeline only: the chat model for the LLM prompt, e.g. 'gpt-4o-mini'. Blank: the "
            "LLM provider's default (OpenAI: gpt-4o-mini, or the OPENAI_CHAT_MODEL setting)."
        ),
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
    remote_agent_id = models.CharField(
        _("remote agent ID"),
        max_length=100,
        blank=True,
        help_text=_(
            "ElevenLabs Conversational AI only: an agent you already have on ElevenLabs, used as "
            "is. Its overrides for prompt, first message, language and voice must be enabled, "
            "and its audio formats set for your carrier. Blank: we create one and keep it in "
            "sync with this page."
        ),
    )
    #: The vendor agents we created, one per audio format:
    #: ``{"ulaw_8000": {"agent_id": ..., "config_hash": ..., "synced_at": iso}, ...}``.
    remote_agents = models.JSONField(_("remote agents"), default=dict, blank=True, editable=False)
    remote_sync_error = models.TextField(_("last sync error"), blank=True, editable=False)
    remote_synced_at = models.DateTimeField(_("last synced"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        ordering = ["name"]

    def __str__(self):
        return self.name

    # -- specs and effective values ---------------------------------------------------------

    @property
    def spec(self) -> ProviderSpec:
        return providers.get(self.provider)

    def stage_spec(self, stage: str) -> StageSpec | None:
        """The spec of the agent's ``stage`` ('stt', 'reply', 'tts'), None if none is chosen."""
        return STAGES[stage].find(getattr(self, f"{stage}_provider"))

    def effective_model(self) -> str:
        return self.spec.resolve_model(self.model)

    def effective_voice(self) -> str:
        return self.spec.resolve_voice(self.voice)

    def effective_tts_voice(self) -> str:
        spec = self.stage_spec("tts")
        return spec.resolve_voice(self.tts_voice) if spec else self.tts_voice

    def rendered_system_prompt(self, extra: dict | None = None) -> str:
        return fill_placeholders(self.system_prompt, {**(self.variables or {}), **(extra or {})})

    def rendered_first_message(self, extra: dict | None = None) -> str:
        return fill_placeholders(self.first_message, {**(self.variables or {}), **(extra or {})})

    # -- credentials ------------------------------------------------------------------------

    def credential_for(self, role: str) -> Credential | None:
        """The credential of 'provider' or of a stage ('stt', 'reply', 'tts').

        The chosen one; for a stage, else the agent's main credential when it is of the stage's
        vendor; else the account's default credential of that vendor.
        """
        if role == "provider":
            spec: ServiceSpec | None = providers.find(self.provider)
            chosen = self.credential
        else:
            spec = self.stage_spec(role)
            chosen = getattr(self, f"{role}_credential")
            if chosen is None and self.credential is not None and spec is not None:
                chosen = self.credential if self.credential.vendor == spec.vendor else None
        if spec is None or not spec.vendor:
            return None
        return chosen if chosen is not None else Credential.objects.default_for(spec.vendor)

    # -- validation -------------------------------------------------------------------------

    def clean(self):
        if self.provider not in providers:
            return  # the field's choice validation names the problem
        errors: dict[str, list] = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        spec = self.spec
        if spec.vendor:
            self._clean_credential(add, "provider", "credential", spec)
        self._clean_voice(add, "voice", spec, self.effective_voice())
        for stage in spec.stages:
            if stage == "reply":
                self._clean_reply(add)
            else:
                self._clean_stage(add, stage)
        for message in spec.options.errors(self.provider_options):
            add("provider_options", message)
        if errors:
            raise ValidationError(errors)

    def _clean_credential(self, add, role: str, field: str, spec: ServiceSpec) -> None:
        vendor = vendors.get(spec.vendor).name if spec.vendor in vendors else spec.vendor
        names = {"service": spec.name, "vendor": vendor}
        credential = self.credential_for(role)
        if credential is None:
            add(
                field,
                _(
                    "%(service)s needs a credential from %(vendor)s: choose one here, or mark one "
                    "of your %(vendor)s credentials as the default."
                )
                % names,
            )
        elif credential.vendor != spec.vendor:
            add(
                field,
                _("%(service)s needs a credential from %(vendor)s, not from %(other)s.")
                % {**names, "other": credential.get_vendor_display()},
            )

    def _clean_stage(self, add, stage: str) -> None:
        registry = STAGES[stage]
        choice = getattr(self, f"{stage}_provider")
        if not choice:
            names = " or ".join(name for _id, name in registry.choices())
            add(
                f"{stage}_provider",
                _("The pipeline needs a %(kind)s: %(names)s.")
                % {"kind": registry.kind, "names": names},
            )
        elif choice in registry:
            spec = registry.get(choice)
            if spec.vendor:  # a stage that runs here (no vendor) needs no credential
                self._clean_credential(add, stage, f"{stage}_credential", spec)
            if stage == "tts":
                self._clean_voice(add, "tts_voice", spec, self.effective_tts_voice())

    def _clean_voice(self, add, field: str, spec: ServiceSpec, voice: str) -> None:
        """The spec's own voice check (e.g. ElevenLabs names → ids); none: anything passes."""
        message = spec.voice_error(voice)
        if message:
            add(field, message)

    def _clean_reply(self, add) -> None:
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
            self._clean_stage(add, "reply")
        else:
            add(
                "reply_handler",
                _(
                    "The pipeline needs a reply handler (on_message): choose a registered "
                    "handler, or write an LLM reply prompt."
                ),
            )
