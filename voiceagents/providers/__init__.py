"""The voice-provider registry: one spec per voice architecture an agent can use.

Each spec names the provider, the vendor whose credential it uses, its endpoint and model/voice
defaults (each overridable by a ``<ID>_URL``/``_MODEL``/``_VOICE`` setting), the schema of
``Agent.provider_options``, the pipeline stages it is made of and the dotted path of its runtime
class. Adding a provider touches its module, its tests and one ``providers.register`` line here (or
in the project's own code: the registry is open).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..registry import Registry
from .elevenlabs_voices import known_voice_names
from .options import (
    ELEVENLABS_CONVAI_OPTIONS,
    OPENAI_REALTIME_OPTIONS,
    PIPELINE_OPTIONS,
)
from .specs import ProviderSpec, ServiceSpec, StageSpec
from .stages import OPENAI_REALTIME_VOICES, STAGES

__all__ = ["ProviderSpec", "ServiceSpec", "StageSpec", "STAGES", "providers", "build_provider"]

providers: Registry[ProviderSpec] = Registry("voice provider")


def provider_choices() -> list[tuple[str, str]]:
    """Choices of ``Agent.provider`` (a callable, so new providers need no migration)."""
    return providers.choices()


providers.register(
    ProviderSpec(
        id="openai_realtime",
        name="OpenAI Realtime",
        vendor="openai",
        default_url="wss://api.openai.com/v1/realtime",
        default_model="gpt-realtime-mini",
        default_voice="alloy",
        suggested_models=("gpt-realtime-mini", "gpt-realtime"),
        suggested_voices=OPENAI_REALTIME_VOICES,
        # Realtime refuses any other voice (its speech endpoint's fable, onyx, nova included).
        custom_voices=False,
        # The seed's default model and its TTS-only voices: still accepted, sent as these.
        replaced_models={
            "gpt-4o-mini-realtime-preview": "gpt-realtime-mini",
            "gpt-4o-realtime-preview": "gpt-realtime",
        },
        replaced_voices={"fable": "ballad", "onyx": "cedar", "nova": "marin"},
        description=_(
            "The quickest replies: OpenAI listens and speaks in one step, and the phone audio "
            "reaches it as it is."
        ),
        options=OPENAI_REALTIME_OPTIONS,
        runtime="voiceagents.providers.openai_realtime.OpenAIRealtimeProvider",
    )
)
providers.register(
    ProviderSpec(
        id="elevenlabs_convai",
        name="ElevenLabs Conversational AI",
        vendor="elevenlabs",
        # The REST root, not the conversation socket: each call asks this API for a signed
        # conversation URL, and provisioning creates and updates the ElevenLabs agent here.
        default_url="https://api.elevenlabs.io",
        default_voice="rachel",
        suggested_models=("eleven_flash_v2_5", "eleven_turbo_v2_5"),
        suggested_voices=tuple(known_voice_names()),
        description=_(
            "The most natural voices: ElevenLabs listens and speaks, with a voice you choose by "
            "name or by ID from your voice library."
        ),
        options=ELEVENLABS_CONVAI_OPTIONS,
        voice_validator="voiceagents.providers.elevenlabs_voices.validate_voice",
        provisioner="voiceagents.providers.elevenlabs_agents.provision_call",
        runtime="voiceagents.providers.elevenlabs_convai.ElevenLabsConvAIProvider",
        report_fetcher="voiceagents.providers.elevenlabs_agents.fetch_conversation",
    )
)
providers.register(
    ProviderSpec(
        id="pipeline",
        name="Pipeline (STT → reply → TTS)",
        description=_(
            "Put together your own: a speech-to-text service, a reply (your project's code or an "
            "LLM prompt) and a text-to-speech voice, each with its own account if you like."
        ),
        options=PIPELINE_OPTIONS,
        stages=tuple(STAGES),
        runtime="voiceagents.providers.pipeline.PipelineProvider",
    )
)


def build_provider(provider_id: str, config):
    """Instantiate the runtime provider for one call."""
    from django.utils.module_loading import import_string

    from ..exceptions import UnsupportedFeature

    spec = providers.get(provider_id)
    if not spec.runtime:
        raise UnsupportedFeature(
            f"The {spec.name} provider cannot take calls yet", vendor=provider_id
        )
    return import_string(spec.runtime)(config)
