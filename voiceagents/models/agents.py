"""Agents: who answers, with which voice provider (or pipeline stages), prompt and credentials.

What an agent needs is read from the registries: the provider's spec names the vendor of the
main credential and the pipeline stages; each stage's spec names its own vendor. Nothing here
knows a vendor by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..conf import SETTINGS_NAME, get_setting, setting_key
from ..exceptions import ConfigurationError, UnknownReplyHandler, UnknownTool
from ..handlers import get_reply_handler, registered_names
from ..providers import STAGES, provider_choices, providers
from ..providers.specs import ProviderSpec, ServiceSpec, StageSpec
from ..providers.stages import reply_choices, stt_choices, tts_choices
from ..templating import fill_placeholders
from ..tools import get_tool
from ..validators import (
    validate_bcp47,
    validate_e164_list,
    validate_model_name,
    validate_variables,
)
from ..vendors import vendors
from .credentials import Credential

#: The fields of each pipeline stage; a voice architecture without that stage ignores them.
STAGE_FIELDS = {
    "stt": ("stt_provider", "stt_credential", "stt_language"),
    "reply": ("reply_handler", "reply_prompt", "reply_provider", "reply_model", "reply_credential"),
    "tts": ("tts_provider", "tts_credential", "tts_voice"),
}
#: The fields of a speech-to-speech provider (one without stages); the pipeline's reply has
#: its own prompt.
SPEECH_TO_SPEECH_FIELDS = ("system_prompt", "model", "voice")
#: The field of a provider whose vendor-side agent we provision: use one of your own instead.
PROVISIONED_FIELDS = ("remote_agent_id",)
MODE_FIELDS = frozenset(
    (
        *SPEECH_TO_SPEECH_FIELDS,
        *PROVISIONED_FIELDS,
        *(f for fs in STAGE_FIELDS.values() for f in fs),
    )
)


def mode_fields(spec: ProviderSpec) -> frozenset[str]:
    """The fields (beyond those every agent has) that the voice architecture ``spec`` uses."""
    fields = [f for stage in spec.stages for f in STAGE_FIELDS.get(stage, ())]
    if not spec.stages:
        fields += SPEECH_TO_SPEECH_FIELDS
    if spec.provisioner:
        fields += PROVISIONED_FIELDS
    return frozenset(fields)


@dataclass(frozen=True)
class KeySource:
    """Where a service's API key comes from, in the words of the agent's page."""

    #: 'credential' (a chosen or default row), 'settings', 'environment' or 'none'.
    kind: str
    text: str


def blank_credential_source(vendor: str) -> KeySource:
    """Where the key of ``vendor`` comes from when no credential is chosen.

    The same order as calls: the vendor's default credential, else ``<VENDOR>_API_KEY`` from
    ``settings.VOICEAGENTS``, else from the environment.
    """
    name = vendors.get(vendor).name if vendor in vendors else vendor
    default = Credential.objects.default_for(vendor)
    if default is not None:
        return KeySource(
            "credential",
            _("using the default %(vendor)s credential “%(label)s”")
            % {"vendor": name, "label": default.label},
        )
    key = setting_key("API_KEY", vendor)
    if get_setting("API_KEY", vendor=vendor, default=""):
        if key in (getattr(settings, SETTINGS_NAME, None) or {}):
            return KeySource(
                "settings", _("using %(key)s from settings.VOICEAGENTS") % {"key": key}
            )
        return KeySource("environment", _("using %(key)s from the environment") % {"key": key})
    return KeySource(
        "none",
        _(
            "no %(vendor)s key: calls will fail until you add a credential from %(vendor)s or "
            "set %(key)s"
        )
        % {"vendor": name, "key": key},
    )


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
        _("Blank: the credential above if it is from the same vendor, else that vendor's default."),
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
            "One service that listens and speaks (the fastest), or a pipeline you put together: "
            "speech-to-text, a reply, text-to-speech."
        ),
    )
    credential = _credential_field(
        _("credential"),
        _(
            "The account calls use, e.g. an OpenAI key for OpenAI Realtime. Pipeline steps of "
            "the same vendor use it too."
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
        help_text=_("The language the agent speaks and understands, e.g. 'en', 'en-GB', 'es'."),
    )
    model = models.CharField(
        _("model"),
        max_length=100,
        blank=True,
        validators=[validate_model_name],
        help_text=_("Blank: the service's default."),
    )
    voice = models.CharField(
        _("voice"),
        max_length=100,
        blank=True,
        help_text=_("Blank: the service's default."),
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
        _("The service that writes down what the caller says."),
    )
    stt_language = models.CharField(
        _("STT language"),
        max_length=35,
        blank=True,
        validators=[validate_bcp47],
        help_text=_("Blank: the agent's language."),
    )
    tts_provider, tts_credential = _stage_fields(
        _("text-to-speech"),
        _("TTS credential"),
        tts_choices,
        _("The service that speaks the agent's replies."),
    )
    tts_voice = models.CharField(
        _("TTS voice"),
        max_length=100,
        blank=True,
        help_text=_("Blank: the text-to-speech service's default voice."),
    )
    reply_handler = models.CharField(
        _("reply handler"),
        max_length=100,
        blank=True,
        help_text=_(
            "Code of your project that writes each reply (your developers register it). Blank: "
            "an LLM answers with the reply prompt below."
        ),
    )
    reply_prompt = models.TextField(
        _("LLM reply prompt"),
        blank=True,
        help_text=_("Instructions for the LLM that writes each reply."),
    )
    reply_provider, reply_credential = _stage_fields(
        _("LLM provider"),
        _("LLM credential"),
        reply_choices,
        _("The service that runs the reply prompt."),
        default="openai_chat",
    )
    reply_model = models.CharField(
        _("LLM reply model"),
        max_length=100,
        blank=True,
        validators=[validate_model_name],
        help_text=_("Blank: the LLM service's default."),
    )
    provider_options = models.JSONField(
        _("provider options"),
        default=dict,
        blank=True,
        help_text=_(
            'Settings of the chosen service, e.g. {"turn_detection": "semantic_vad"} for OpenAI '
            "Realtime. Unknown names are refused; values are passed to the service as they are."
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
        help_text=_(
            "Numbers the agent may transfer callers to, in international format, e.g. "
            '["+14155550100"].'
        ),
    )
    tools = models.JSONField(
        _("tools"),
        default=list,
        blank=True,
        help_text=_(
            "Functions of your own the agent may use during a call (registered with "
            "@voiceagents.tool or VOICEAGENTS['TOOLS']), besides hanging up and transferring."
        ),
    )
    # Outbound calls only: what to do when answering-machine detection (AMD) answers.
    answering_machine_detection = models.BooleanField(
        _("answering-machine detection"),
        default=True,
        help_text=_(
            "Outbound calls only: ask the carrier whether a person or a machine answered. The "
            "agent holds its first message until the carrier says (or the AMD timeout passes: "
            "then it speaks as to a person)."
        ),
    )
    machine_action = models.CharField(
        _("when a machine answers"),
        max_length=20,
        choices=[
            ("voicemail", _("leave the voicemail message")),
            ("hangup", _("hang up")),
        ],
        default="hangup",
        help_text=_(
            "Leave the voicemail message below (spoken in the agent's voice after the beep; the "
            "call then ends as 'voicemail'), or hang up at once ('machine_hangup')."
        ),
    )
    voicemail_message = models.TextField(
        _("voicemail message"),
        blank=True,
        help_text=_(
            "What the agent says to an answering machine. {placeholders} are filled from the "
            "variables. Blank: the call hangs up instead."
        ),
    )
    remote_agent_id = models.CharField(
        _("remote agent ID"),
        max_length=100,
        blank=True,
        help_text=_(
            "An agent you already have on ElevenLabs, used as is. Its overrides for prompt, "
            "first message, language and voice must be enabled, and its audio formats set for "
            "your carrier. Blank: we create one and keep it in sync with this page."
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

    def rendered_voicemail_message(self, extra: dict | None = None) -> str:
        return fill_placeholders(
            self.voicemail_message, {**(self.variables or {}), **(extra or {})}
        )

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

    def key_roles(self) -> list[tuple[str, ServiceSpec]]:
        """The roles ('provider' or a stage) whose service needs a key of its vendor in a call."""
        spec = providers.find(self.provider)
        if spec is None:
            return []
        roles: list[tuple[str, ServiceSpec | None]] = [("provider", spec)]
        for stage in spec.stages:
            if stage != "reply" or not self.reply_handler:  # a handler needs no LLM
                roles.append((stage, self.stage_spec(stage)))
        return [(role, service) for role, service in roles if service and service.vendor]

    def key_source(self, role: str) -> KeySource:
        """Where the key of ``role``'s service comes from in a call (as ``credential_for``)."""
        service = providers.get(self.provider) if role == "provider" else self.stage_spec(role)
        credential = self.credential_for(role)
        if credential is None or credential.vendor != service.vendor:
            return blank_credential_source(service.vendor)
        return KeySource(
            "credential", _("using the credential “%(label)s”") % {"label": credential.label}
        )

    def missing_keys(self) -> list[str]:
        """A sentence for each service that has no key: its calls fail until one is added."""
        return [
            _("%(service)s has %(source)s.") % {"service": service.name, "source": source.text}
            for role, service in self.key_roles()
            if (source := self.key_source(role)).kind == "none"
        ]

    # -- validation -------------------------------------------------------------------------

    def unused_fields(self) -> frozenset[str]:
        """The fields the chosen voice architecture does not use: kept, never validated."""
        spec = providers.find(self.provider)
        return MODE_FIELDS - mode_fields(spec) if spec else frozenset()

    def clean_fields(self, exclude=None):
        super().clean_fields(exclude={*(exclude or ()), *self.unused_fields()})

    def clean(self):
        if self.provider not in providers:
            return  # the field's choice validation names the problem
        errors: dict[str, list] = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        spec = self.spec
        if spec.vendor:
            self._clean_credential(add, "credential", spec, self.credential)
        if not spec.stages:
            self._clean_model(add, "model", spec, self.model)
            self._clean_voice(add, "voice", spec, self.voice, self.effective_voice())
        for stage in spec.stages:
            if stage == "reply":
                self._clean_reply(add)
            else:
                self._clean_stage(add, stage)
        for message in spec.options.errors(self.provider_options):
            add("provider_options", message)
        self._clean_tools(add)
        if errors:
            raise ValidationError(errors)

    def _clean_tools(self, add) -> None:
        if not isinstance(self.tools, list) or not all(isinstance(n, str) for n in self.tools):
            add("tools", _("Give a list of tool names."))
            return
        for name in self.tools:
            try:
                get_tool(name)
            except (UnknownTool, ConfigurationError) as err:
                add("tools", str(err))

    def _clean_credential(self, add, field: str, spec: ServiceSpec, chosen) -> None:
        """A chosen credential must be of the service's vendor. None chosen is no error: the
        vendor's default credential or its settings key serves, and without either the page
        warns (``missing_keys``) but the agent saves."""
        if chosen is None or chosen.vendor == spec.vendor:
            return
        vendor = vendors.get(spec.vendor).name if spec.vendor in vendors else spec.vendor
        add(
            field,
            _("%(service)s needs a credential from %(vendor)s, not from %(other)s.")
            % {"service": spec.name, "vendor": vendor, "other": chosen.get_vendor_display()},
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
                chosen = getattr(self, f"{stage}_credential")
                self._clean_credential(add, f"{stage}_credential", spec, chosen)
            if stage == "tts":
                self._clean_voice(
                    add, "tts_voice", spec, self.tts_voice, self.effective_tts_voice()
                )
            if stage == "reply":
                self._clean_model(add, "reply_model", spec, self.reply_model)

    def _clean_model(self, add, field: str, spec: ServiceSpec, chosen: str) -> None:
        """A service that takes only its own models refuses any other name."""
        if chosen and not spec.custom_models and not _known(chosen, spec, "models"):
            add(
                field,
                _("%(service)s has no model “%(name)s”: choose one of %(known)s.")
                % {"service": spec.name, "name": chosen, "known": ", ".join(spec.suggested_models)},
            )

    def _clean_voice(self, add, field: str, spec: ServiceSpec, chosen: str, voice: str) -> None:
        """A service that takes only its own voices refuses any other name; then the spec's own
        check of the voice sent (e.g. ElevenLabs names → ids)."""
        if chosen and not spec.custom_voices and not _known(chosen, spec, "voices"):
            add(
                field,
                _("%(service)s has no voice “%(name)s”: choose one of %(known)s.")
                % {"service": spec.name, "name": chosen, "known": ", ".join(spec.suggested_voices)},
            )
            return
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
                    "The pipeline needs a reply: choose a reply handler, or write an LLM reply "
                    "prompt."
                ),
            )


def _known(name: str, spec: ServiceSpec, kind: str) -> bool:
    """``name`` is one of the spec's suggested ``kind`` ('models', 'voices') or a replaced one."""
    return name in getattr(spec, f"suggested_{kind}") or name in getattr(spec, f"replaced_{kind}")
