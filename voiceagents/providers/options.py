"""Per-provider option schemas for ``Agent.provider_options``.

Each provider declares the options it understands, their JSON types and, where the choice is
ours to make (not a vendor limit), the allowed values. Unknown keys are refused so that a typo
does not silently do nothing; vendor-side values (model names, voices, output formats) are passed
through unchecked and the vendor refuses what it does not support.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_JSON_TYPE_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    dict: "an object",
    list: "a list",
}


def deep_merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested objects key by key (neither is changed): how
    pass-through options extend what a provider sends."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merged(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Option:
    """One provider option: its JSON type(s), allowed values where ours to decide, and help."""

    types: tuple[type, ...]
    help: str
    choices: tuple[Any, ...] = ()

    def check(self, value: Any) -> str | None:
        """An error message for ``value``, or None when it is acceptable."""
        ok_types = self.types
        if float in ok_types:
            ok_types = (*ok_types, int)
        # bool is an int subclass in Python but not a number in JSON.
        if isinstance(value, bool) and bool not in self.types:
            ok = False
        else:
            ok = isinstance(value, ok_types)
        if not ok:
            wanted = " or ".join(_JSON_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            return f"must be {wanted}"
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(repr(c) for c in self.choices)
        return None


@dataclass(frozen=True)
class OptionSchema:
    options: dict[str, Option] = field(default_factory=dict)

    def errors(self, values: Any) -> list[str]:
        if values in (None, ""):
            return []
        if not isinstance(values, dict):
            return [
                'Provider options must be a JSON object, e.g. {"turn_detection": "semantic_vad"}.'
            ]
        problems = []
        for key, value in values.items():
            option = self.options.get(key)
            if option is None:
                known = ", ".join(sorted(self.options)) or "none"
                problems.append(f"Unknown option {key!r}; this provider accepts: {known}.")
                continue
            message = option.check(value)
            if message:
                problems.append(f"Option {key!r} {message}.")
        return problems


OPENAI_REALTIME_OPTIONS = OptionSchema(
    {
        "turn_detection": Option(
            (str,),
            "How OpenAI decides the caller finished a turn.",
            ("server_vad", "semantic_vad", "none"),
        ),
        "audio_format": Option(
            (str,),
            "Audio format on the OpenAI leg. 'pcmu' passes Twilio's mu-law through untouched; "
            "'pcm' forces 24 kHz PCM16 through our converter.",
            ("pcmu", "pcm"),
        ),
        "transcription_model": Option(
            (str,), "Model for the caller's input transcription, e.g. 'gpt-4o-mini-transcribe'."
        ),
        "max_output_tokens": Option((int, str), "Reply length cap, or 'inf'."),
        "tools": Option((list,), "Function tools, in OpenAI's session tool format."),
        "session": Option(
            (dict,), "Extra fields merged into session.update as-is (advanced, passed through)."
        ),
    }
)

ELEVENLABS_CONVAI_OPTIONS = OptionSchema(
    {
        "dtmf": Option(
            (str,),
            "How caller key presses reach the agent: as background context (default) or as a "
            "user message.",
            ("contextual_update", "user_message"),
        ),
        "dynamic_variables": Option((dict,), "Dynamic variables sent at conversation start."),
        "conversation_config_override": Option(
            (dict,), "Extra conversation_config_override fields, passed through."
        ),
    }
)

PIPELINE_OPTIONS = OptionSchema(
    {
        "vad": Option((str,), "Voice activity detector for endpointing.", ("energy", "silero")),
        "endpointing_ms": Option((int,), "Silence that ends the caller's turn, in ms."),
        "interruptions": Option((bool,), "Whether the caller may interrupt the agent."),
        "stt_options": Option((dict,), "Extra STT request parameters, passed through."),
        "tts_model": Option((str,), "TTS model, e.g. 'eleven_flash_v2_5' or 'gpt-4o-mini-tts'."),
        "tts_options": Option((dict,), "Extra TTS request parameters, passed through."),
        "reply_timeout": Option(
            (float,), "Seconds the reply may take to start before the apology is said (8)."
        ),
        "apology": Option(
            (str,), "Said when the reply fails or is too slow, e.g. 'Sorry, say that again?'"
        ),
    }
)
