"""What a call used of each paid service, as the vendors count it, for the call's cost estimate.

Providers and pipeline stages add to one ``UsageMeter`` per call (a provider that is reopened
after a drop gets the same meter, so nothing counted before is lost): OpenAI Realtime's
``response.done`` token counts, the input transcription's tokens or seconds, the pipeline's
speech-to-text seconds, its LLM's tokens and its text-to-speech characters. The call's end writes
``report()`` to ``Call.metrics["usage"]``; ``voiceagents.costs`` prices it.

Adding is a dict update per response or sentence, never per audio frame.
"""

from __future__ import annotations

from collections.abc import Mapping


class UsageMeter:
    def __init__(self) -> None:
        #: (service, model) → unit → amount.
        self._amounts: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, service: str, model: str, amounts: Mapping[str, float | int | None]) -> None:
        """Count ``amounts`` (unit → quantity; ``None`` and non-numbers are skipped)."""
        counters = self._amounts.setdefault((service, model or ""), {})
        for unit, value in amounts.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
                continue
            counters[unit] = counters.get(unit, 0) + value

    def report(self) -> list[dict]:
        """One entry per service and model: ``{"service", "model", <unit>: amount, ...}``."""
        return [
            {"service": service, "model": model, **{u: round(v, 3) for u, v in counters.items()}}
            for (service, model), counters in self._amounts.items()
            if counters
        ]

    def __bool__(self) -> bool:
        return any(self._amounts.values())


def realtime_token_usage(usage: Mapping) -> dict[str, int | None]:
    """OpenAI's ``usage`` object of a ``response.done`` → our units (tokens by kind)."""
    details_in = usage.get("input_token_details") or {}
    details_out = usage.get("output_token_details") or {}
    cached = details_in.get("cached_tokens_details") or {}
    cached_text = cached.get("text_tokens")
    cached_audio = cached.get("audio_tokens")
    if cached_text is None and cached_audio is None and details_in.get("cached_tokens"):
        cached_audio = details_in.get("cached_tokens")  # no split given: audio dominates
    text_in = details_in.get("text_tokens")
    audio_in = details_in.get("audio_tokens")
    return {
        "input_text_tokens": _minus(text_in, cached_text),
        "input_audio_tokens": _minus(audio_in, cached_audio),
        "cached_input_text_tokens": cached_text,
        "cached_input_audio_tokens": cached_audio,
        "output_text_tokens": details_out.get("text_tokens"),
        "output_audio_tokens": details_out.get("audio_tokens"),
    }


def _minus(total, part):
    if not isinstance(total, int | float):
        return None
    return total - (part if isinstance(part, int | float) else 0)
