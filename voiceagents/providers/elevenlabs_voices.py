"""ElevenLabs voice names → voice IDs.

ElevenLabs' APIs take only a ``voice_id``; agents may name a premade voice instead ('rachel').
The table holds ElevenLabs' classic premade voices, whose ids are the same on every account.
Anything that looks like a voice id passes through unchanged (the account's own and library
voices), and ElevenLabs refuses an id it does not know.
"""

from __future__ import annotations

import re

#: Classic premade voices (lower-case name → voice_id), the same on every account.
PREMADE_VOICES: dict[str, str] = {
    "rachel": "21m00Tcm4TlvDq8ikWAM",
    "adam": "pNInz6obpgDQGcFmaJgB",
    "antoni": "ErXwobaYiN019PkySvjV",
    # Listed as "Sarah" by newer voice lists; the id is unchanged.
    "bella": "EXAVITQu4vr4xnSDxMaL",
    "domi": "AZnzlk1XvdvUeBnXmlld",
    "elli": "MF3mGyEYCl7XYWbV9V6O",
    "josh": "TxGEqnHWrfWFTfGW9XjX",
    "arnold": "VR6AewLTigWG4xSOukaG",
    "sam": "yoZ06aMxZJJ28mfd3POQ",
    "clyde": "2EiwWnXFnvU5JabPnv8n",
    "drew": "29vD33N1CtxCmqQRPOHJ",
    "paul": "5Q0t7uMcjvnagumLfvZi",
    "dave": "CYw3kZ02Hs0563khs1Fj",
    "fin": "D38z5RcWu1voky8WS1ja",
    "aria": "9BWtsMINqrJLrRacOk9x",
}

#: ElevenLabs' newer default voices. Less certain than the table above: these ids come from
#: fewer sources and could not be checked against the vendor's own list, so a wrong one shows up
#: as ElevenLabs refusing the voice (with its message) when the agent is synced.
NEWER_DEFAULT_VOICES: dict[str, str] = {
    "george": "JBFqnCBsd6RMkjVDRZzb",
    "charlotte": "XB0fDUnXU5powFXDhCwa",
    "laura": "FGY2WhTYpPnrIDTdsKH5",
    "liam": "TX3LPaxmHKxFdv7VOQHJ",
    "brian": "nPczCjzI2devNBz1zQrb",
    "daniel": "onwK4e9ZLuTAKqWW03F9",
    "lily": "pFZP5JQG7iQjIQuC4Bku",
}

VOICES: dict[str, str] = {**PREMADE_VOICES, **NEWER_DEFAULT_VOICES}

#: ElevenLabs voice ids are 20 letters and digits.
_VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")


def known_voice_names() -> list[str]:
    """The names ``resolve_voice_id`` knows, in table order."""
    return list(VOICES)


def resolve_voice_id(value: str) -> str:
    """The voice id of a known name (any case), or ``value`` itself when it looks like an id.

    Raises ``ValueError`` naming the known voices otherwise.
    """
    name = (value or "").strip()
    voice_id = VOICES.get(name.lower())
    if voice_id:
        return voice_id
    if _VOICE_ID.fullmatch(name):
        return name
    raise ValueError(
        f"Unknown ElevenLabs voice {value!r}: use a voice ID (20 letters and digits, from your "
        f"ElevenLabs voice library) or one of these names: {', '.join(known_voice_names())}."
    )


def validate_voice(value: str) -> None:
    """A spec's ``voice_validator``: raises ``ValueError`` with the message for the admin."""
    resolve_voice_id(value)
