"""What a call cost, estimated: the carrier's minutes and each AI service's usage, priced.

``estimate(call)`` prices ``Call.metrics["usage"]`` (what the providers counted: tokens, seconds of
audio, characters; see ``voiceagents.usage``) and the call's minutes at the carrier with a rate
table, and ``finalize_call`` stores the result in ``Call.cost``. When the carrier itself reports
what it charged (Twilio's ``price``), that figure replaces the estimate of the carrier's part.

The rates are public list prices in US dollars as we last read them, per unit (a token, a second,
a character, a minute). They change, and your contract may differ: set ``COST_RATES`` (same shape;
merged over these, so you may give only what differs). A usage with no rate is listed under
``unpriced`` rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .conf import get_setting
from .providers.options import deep_merged

PER_MILLION = 1 / 1_000_000
PER_MINUTE = 1 / 60

#: Unit names as shown to people, singular.
UNITS = {
    "minutes": "minute",
    "audio_seconds": "second of audio",
    "characters": "character",
    "input_tokens": "input token",
    "output_tokens": "output token",
    "input_text_tokens": "input text token",
    "input_audio_tokens": "input audio token",
    "cached_input_text_tokens": "cached input text token",
    "cached_input_audio_tokens": "cached input audio token",
    "output_text_tokens": "output text token",
    "output_audio_tokens": "output audio token",
}

DEFAULT_RATES: dict[str, Any] = {
    "currency": "USD",
    # Per minute, by carrier and direction (US local numbers).
    "carriers": {
        "twilio": {"inbound": 0.0085, "outbound": 0.014},
        "telnyx": {"inbound": 0.0035, "outbound": 0.007},
        "browser": {"inbound": 0.0, "outbound": 0.0},
    },
    # By service (as ``voiceagents.usage`` names it), then model ("*": any model), then unit.
    "services": {
        "openai_realtime": {
            "gpt-realtime": {
                "input_text_tokens": 4 * PER_MILLION,
                "cached_input_text_tokens": 0.4 * PER_MILLION,
                "input_audio_tokens": 32 * PER_MILLION,
                "cached_input_audio_tokens": 0.4 * PER_MILLION,
                "output_text_tokens": 16 * PER_MILLION,
                "output_audio_tokens": 64 * PER_MILLION,
            },
            "gpt-realtime-mini": {
                "input_text_tokens": 0.6 * PER_MILLION,
                "cached_input_text_tokens": 0.06 * PER_MILLION,
                "input_audio_tokens": 10 * PER_MILLION,
                "cached_input_audio_tokens": 0.3 * PER_MILLION,
                "output_text_tokens": 2.4 * PER_MILLION,
                "output_audio_tokens": 20 * PER_MILLION,
            },
        },
        "openai_transcription": {
            "whisper-1": {"audio_seconds": 0.006 * PER_MINUTE},
            "gpt-4o-transcribe": {
                "audio_seconds": 0.006 * PER_MINUTE,
                "input_audio_tokens": 6 * PER_MILLION,
                "input_text_tokens": 2.5 * PER_MILLION,
                "output_text_tokens": 10 * PER_MILLION,
            },
            "gpt-4o-mini-transcribe": {
                "audio_seconds": 0.003 * PER_MINUTE,
                "input_audio_tokens": 3 * PER_MILLION,
                "input_text_tokens": 1.25 * PER_MILLION,
                "output_text_tokens": 5 * PER_MILLION,
            },
        },
        "elevenlabs_convai": {"*": {"minutes": 0.10}},
        "stt:deepgram": {"*": {"audio_seconds": 0.0077 * PER_MINUTE}},
        "stt:whisper": {"*": {"audio_seconds": 0.006 * PER_MINUTE}},
        "stt:local": {"*": {"audio_seconds": 0.0}},
        "reply:openai_chat": {
            "gpt-4o-mini": {"input_tokens": 0.15 * PER_MILLION, "output_tokens": 0.6 * PER_MILLION},
            "gpt-4o": {"input_tokens": 2.5 * PER_MILLION, "output_tokens": 10 * PER_MILLION},
            "gpt-4.1-mini": {"input_tokens": 0.4 * PER_MILLION, "output_tokens": 1.6 * PER_MILLION},
        },
        "tts:openai_tts": {
            "tts-1": {"characters": 15 * PER_MILLION},
            "tts-1-hd": {"characters": 30 * PER_MILLION},
            "gpt-4o-mini-tts": {"characters": 12 * PER_MILLION},
        },
        "tts:elevenlabs": {"*": {"characters": 0.10 / 1000}},
        "tts:local": {"*": {"characters": 0.0}},
    },
}


def rates() -> dict[str, Any]:
    """The rate table: ``DEFAULT_RATES`` with ``COST_RATES`` merged over it."""
    return deep_merged(DEFAULT_RATES, get_setting("COST_RATES") or {})


def _service_rates(table: Mapping, service: str, model: str) -> Mapping[str, float] | None:
    models = (table.get("services") or {}).get(service) or {}
    return models.get(model) or models.get("*")


def _item(what, service, model, unit, quantity, rate, source="rate") -> dict:
    return {
        "what": what,
        "service": service,
        "model": model,
        "unit": UNITS.get(unit, unit),
        "quantity": round(quantity, 3),
        "rate": rate,
        "amount": round(quantity * rate, 6),
        "source": source,
    }


def estimate(call, *, carrier_price: float | None = None, carrier_currency: str = "") -> dict:
    """The cost of ``call`` (a ``Call``) as ``Call.cost`` stores it.

    ``carrier_price``: what the carrier reports it charged (positive), replacing the estimate of
    its minutes when given in the table's currency.
    """
    table = rates()
    currency = table.get("currency", "USD")
    items: list[dict] = []
    unpriced: list[dict] = []
    seconds = call.duration.total_seconds() if call.duration is not None else 0.0
    if carrier_price is not None and (carrier_currency or currency).upper() == currency.upper():
        items.append(
            _item("carrier", call.carrier, "", "minutes", seconds / 60, 0.0, source="carrier")
            | {"amount": round(carrier_price, 6), "rate": None}
        )
    elif seconds:
        # Carriers bill started minutes.
        minutes = math.ceil(seconds / 60)
        rate = ((table.get("carriers") or {}).get(call.carrier) or {}).get(call.direction)
        if rate is None:
            unpriced.append({"service": call.carrier, "unit": "minutes", "quantity": minutes})
        else:
            items.append(_item("carrier", call.carrier, "", "minutes", minutes, rate))
    usage = list((call.metrics or {}).get("usage") or ())
    if call.provider == "elevenlabs_convai" and seconds:
        usage.append({"service": "elevenlabs_convai", "model": "", "minutes": seconds / 60})
    for entry in usage:
        service, model = entry.get("service", ""), entry.get("model", "")
        per_unit = _service_rates(table, service, model) or {}
        for unit, quantity in entry.items():
            if unit in ("service", "model") or not isinstance(quantity, int | float):
                continue
            rate = per_unit.get(unit)
            if rate is None:
                unpriced.append(
                    {"service": service, "model": model, "unit": unit, "quantity": quantity}
                )
            else:
                items.append(_item("voice", service, model, unit, quantity, rate))
    return {
        "currency": currency,
        "total": round(sum(item["amount"] for item in items), 6),
        "items": items,
        "unpriced": unpriced,
    }
