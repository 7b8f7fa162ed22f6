"""What the registries know about a voice provider or a pipeline stage, before any call runs.

A spec names the service, the vendor whose credential it uses and its public defaults. Each
default can be overridden per deployment with a setting keyed by the spec's id, read through
``voiceagents.conf`` when a call starts: ``OPENAI_REALTIME_URL``, ``OPENAI_REALTIME_MODEL``,
``DEEPGRAM_URL``... (as anymail backends read ``<ESP>_API_URL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from ..conf import get_setting
from .options import OptionSchema


@dataclass(frozen=True)
class ServiceSpec:
    """Common ground of providers and stages: identity, credential vendor, defaults."""

    #: snake_case id, stored on the agent and used as the settings prefix.
    id: str
    #: Display name in the vendor's own spelling.
    name: str
    #: Vendor id of the credential it uses ('' when it needs none of its own, like the pipeline).
    vendor: str = ""
    #: Public endpoint; the ``<ID>_URL`` setting and a credential's ``api_base_url`` override it.
    default_url: str = ""
    #: Model used when the agent leaves it blank; the ``<ID>_MODEL`` setting overrides it.
    default_model: str = ""
    #: Voice used when the agent leaves it blank; the ``<ID>_VOICE`` setting overrides it.
    default_voice: str = ""
    #: Known values the admin offers as choices.
    suggested_models: tuple[str, ...] = ()
    suggested_voices: tuple[str, ...] = ()
    #: Whether the vendor takes models or voices beyond the suggested ones (a voice ID of the
    #: account, a new model name): the admin then offers "Other…". False: only the suggested
    #: ones (and the ``replaced_*`` names) are accepted.
    custom_models: bool = True
    custom_voices: bool = True
    #: One line for the admin: what choosing it means.
    description: str = ""
    #: Dotted path of ``validate(voice)``, raising ``ValueError`` with a message for the admin
    #: when the vendor cannot take that voice (ElevenLabs: a name that is neither in its premade
    #: table nor shaped like a voice id). Empty: any voice passes through.
    voice_validator: str = ""
    #: Names the seed (or an older release) uses that the vendor no longer takes → the current
    #: equivalent sent instead at call time. Agents keep the name they were saved with; the
    #: admin says what is sent (``replacement_notes``).
    replaced_models: Mapping[str, str] = field(default_factory=dict)
    replaced_voices: Mapping[str, str] = field(default_factory=dict)

    def resolve_url(self, override: str = "") -> str:
        """``override`` (a credential's base URL), else the ``<ID>_URL`` setting, else the default."""
        return override or str(get_setting("URL", vendor=self.id, default=self.default_url))

    def configured(self, kind: str, chosen: str = "") -> str:
        """The ``kind`` ('model' or 'voice') named: the chosen one, else the setting or default."""
        default = self.default_model if kind == "model" else self.default_voice
        return chosen or str(get_setting(kind.upper(), vendor=self.id, default=default))

    def resolve_model(self, chosen: str = "") -> str:
        """The model sent at call time: the configured one, a retired name replaced."""
        model = self.configured("model", chosen)
        return self.replaced_models.get(model, model)

    def resolve_voice(self, chosen: str = "") -> str:
        """The voice sent at call time: the configured one, a retired name replaced."""
        voice = self.configured("voice", chosen)
        return self.replaced_voices.get(voice, voice)

    def replacement_notes(self, model: str = "", voice: str = "") -> list[str]:
        """A sentence for each configured name that calls replace, for the agent's page."""
        notes = []
        for kind, label, table, chosen in (
            ("model", _("model"), self.replaced_models, model),
            ("voice", _("voice"), self.replaced_voices, voice),
        ):
            name = self.configured(kind, chosen)
            if name in table:
                notes.append(
                    _("%(service)s no longer takes the %(kind)s “%(old)s”: calls use “%(new)s”.")
                    % {"service": self.name, "kind": label, "old": name, "new": table[name]}
                )
        return notes

    def voice_error(self, voice: str) -> str | None:
        """Why ``voice`` cannot be used, per ``voice_validator``; None when it can."""
        if not self.voice_validator:
            return None
        try:
            import_string(self.voice_validator)(voice)
        except ValueError as err:
            return str(err)
        return None


@dataclass(frozen=True)
class ProviderSpec(ServiceSpec):
    """A voice architecture an agent can use (``Agent.provider``)."""

    #: Schema of ``Agent.provider_options``.
    options: OptionSchema = field(default_factory=OptionSchema)
    #: Dotted path of the runtime class (a ``VoiceProvider``); empty while not yet available.
    runtime: str = ""
    #: Pipeline stages it is composed of, in call order (``("stt", "reply", "tts")``).
    stages: tuple[str, ...] = ()
    #: Dotted path of ``async provision(agent_pk, carrier_format) -> dict``, awaited when a call
    #: starts, before the provider opens (outside the call's set-up transaction): it makes sure
    #: the vendor side is ready (e.g. an ElevenLabs agent exists and is up to date for that
    #: carrier's audio format) and returns option overrides for this call (``{"agent_id": ...}``).
    #: Raises ``ProvisioningError`` with the vendor's message when it cannot.
    provisioner: str = ""
    #: Dotted path of ``fetch_report(call) -> dict``: what the vendor kept about a finished call
    #: (ElevenLabs: the conversation's transcript and analysis), stored in
    #: ``Call.provider_report`` by ``finalize_call`` when the ``<ID>_FETCH_CONVERSATION`` setting
    #: is on. Raises ``VoiceAgentsError`` when it cannot.
    report_fetcher: str = ""


@dataclass(frozen=True)
class StageSpec(ServiceSpec):
    """One implementation of a pipeline stage (a speech-to-text service, a TTS voice, an LLM)."""

    #: Dotted path of the runtime class; empty while not yet available.
    runtime: str = ""
