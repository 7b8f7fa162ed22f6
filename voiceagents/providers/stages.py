"""Registries of the pipeline's stages: speech-to-text, reply (LLM) and text-to-speech.

The pipeline provider is composed of one entry of each; an agent names them in
``stt_provider``, ``reply_provider`` and ``tts_provider`` and may give each its own credential.
"""

from __future__ import annotations

from ..registry import Registry
from .elevenlabs_voices import known_voice_names
from .specs import StageSpec

#: The voices of OpenAI Realtime (``marin`` and ``cedar`` are the ones OpenAI recommends).
OPENAI_REALTIME_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
)  # fmt: skip
#: The voices of OpenAI's speech endpoint (the older tts-1 models take a subset).
OPENAI_TTS_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)  # fmt: skip

stt_stages: Registry[StageSpec] = Registry("speech-to-text provider")
reply_stages: Registry[StageSpec] = Registry("reply model provider")
tts_stages: Registry[StageSpec] = Registry("text-to-speech provider")

#: Stage name → its registry; the stage name prefixes the agent's fields (``stt_provider``).
STAGES: dict[str, Registry[StageSpec]] = {
    "stt": stt_stages,
    "reply": reply_stages,
    "tts": tts_stages,
}


def stt_choices() -> list[tuple[str, str]]:
    return stt_stages.choices()


def reply_choices() -> list[tuple[str, str]]:
    return reply_stages.choices()


def tts_choices() -> list[tuple[str, str]]:
    return tts_stages.choices()


stt_stages.register(
    StageSpec(
        id="deepgram",
        name="Deepgram (streaming)",
        vendor="deepgram",
        default_url="wss://api.deepgram.com/v1/listen",
        default_model="nova-3",
        runtime="voiceagents.pipeline.deepgram.DeepgramSTT",
    )
)
stt_stages.register(
    StageSpec(
        id="whisper",
        name="OpenAI Whisper",
        vendor="openai",
        default_url="https://api.openai.com/v1/audio/transcriptions",
        default_model="whisper-1",
        runtime="voiceagents.pipeline.whisper.WhisperSTT",
    )
)
stt_stages.register(
    StageSpec(
        id="local",
        name="Offline (PocketSphinx)",
        vendor="",
        description="English speech recognition in the server itself: no network, no key. "
        "A small model, good enough for a demo.",
        runtime="voiceagents.pipeline.local_stt.LocalSTT",
    )
)
reply_stages.register(
    StageSpec(
        id="openai_chat",
        name="OpenAI Chat Completions",
        vendor="openai",
        default_url="https://api.openai.com/v1/chat/completions",
        default_model="gpt-4o-mini",
        suggested_models=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"),
        runtime="voiceagents.pipeline.openai_chat.OpenAIChatReply",
    )
)
tts_stages.register(
    StageSpec(
        id="elevenlabs",
        name="ElevenLabs",
        vendor="elevenlabs",
        # The REST root: each sentence is one streamed POST /v1/text-to-speech/{voice}/stream.
        default_url="https://api.elevenlabs.io",
        default_model="eleven_flash_v2_5",
        default_voice="rachel",
        suggested_voices=tuple(known_voice_names()),
        runtime="voiceagents.pipeline.elevenlabs_tts.ElevenLabsTTS",
        voice_validator="voiceagents.providers.elevenlabs_voices.validate_voice",
    )
)
tts_stages.register(
    StageSpec(
        id="openai_tts",
        name="OpenAI TTS",
        vendor="openai",
        default_url="https://api.openai.com/v1/audio/speech",
        default_model="gpt-4o-mini-tts",
        default_voice="alloy",
        suggested_voices=OPENAI_TTS_VOICES,
        custom_voices=False,
        runtime="voiceagents.pipeline.openai_tts.OpenAITTS",
    )
)
tts_stages.register(
    StageSpec(
        id="local",
        name="Offline (eSpeak NG)",
        vendor="",
        default_voice="en",
        suggested_voices=("en", "en-us", "en-gb", "en-us+klatt4"),
        description="A synthetic voice made in the server itself: no network, no key.",
        runtime="voiceagents.pipeline.local_tts.LocalTTS",
    )
)
