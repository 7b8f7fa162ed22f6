"""The voice-provider registry: one entry per voice architecture of the seed.

Each entry names the provider, the option schema of ``Agent.provider_options`` and the model and
voice defaults. The runtime classes (sockets, audio formats) attach to these entries as they are
built; adding a provider touches its module, its tests and one ``providers.register`` line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry
from .options import (
    ELEVENLABS_CONVAI_OPTIONS,
    OPENAI_REALTIME_OPTIONS,
    PIPELINE_OPTIONS,
    OptionSchema,
)


@dataclass(frozen=True)
class ProviderSpec:
    #: snake_case id, stored in ``Agent.provider``.
    id: str
    #: Display name in the vendor's own spelling.
    name: str
    options: OptionSchema
    #: Model used when the agent leaves ``model`` blank.
    default_model: str = ""
    #: Voice used when the agent leaves ``voice`` blank.
    default_voice: str = ""
    #: Known values offered as suggestions in the admin; anything else passes through.
    suggested_models: tuple[str, ...] = ()
    suggested_voices: tuple[str, ...] = ()
    #: Dotted path of the runtime class (a ``VoiceProvider``); empty while not yet available.
    runtime: str = ""


providers: Registry[ProviderSpec] = Registry("voice provider")

OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")

providers.register(
    ProviderSpec(
        id="openai_realtime",
        name="OpenAI Realtime",
        options=OPENAI_REALTIME_OPTIONS,
        default_model="gpt-4o-mini-realtime-preview",
        default_voice="alloy",
        suggested_models=(
            "gpt-4o-mini-realtime-preview",
            "gpt-4o-realtime-preview",
            "gpt-realtime",
        ),
        suggested_voices=OPENAI_VOICES,
        runtime="voiceagents.providers.openai_realtime.OpenAIRealtimeProvider",
    )
)
providers.register(
    ProviderSpec(
        id="elevenlabs_convai",
        name="ElevenLabs Conversational AI",
        options=ELEVENLABS_CONVAI_OPTIONS,
        default_voice="rachel",
        suggested_voices=("rachel", "adam"),
    )
)
providers.register(
    ProviderSpec(id="pipeline", name="Pipeline (STT → reply → TTS)", options=PIPELINE_OPTIONS)
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
