"""The tools every agent may be offered, described once for every provider.

A tool is a name, a one-line description the model reads, and a JSON-schema object for its
parameters. Providers translate these into their own shape (OpenAI function tools, ElevenLabs
client tools); the call session runs them when the model calls one (``voiceagents.call.tools``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    #: A JSON-schema object (``{"type": "object", "properties": {...}, "required": [...]}``).
    parameters: dict[str, Any] = field(default_factory=dict)


END_CALL = ToolSpec(
    name="end_call",
    description=(
        "Hang up the phone call. Use it once the conversation is over and you have said goodbye."
    ),
    parameters={
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the call ends, in a few words."}
        },
        "required": [],
    },
)

TRANSFER_CALL = ToolSpec(
    name="transfer_call",
    description=(
        "Transfer the caller to another phone number. Only numbers you were given for transfers "
        "are accepted."
    ),
    parameters={
        "type": "object",
        "properties": {
            "number": {
                "type": "string",
                "description": "The phone number in E.164 format, e.g. +14155550100.",
            }
        },
        "required": ["number"],
    },
)


def builtin_tools(transfer_allowlist: Sequence[str]) -> tuple[ToolSpec, ...]:
    """The built-in tools an agent is offered: ``end_call`` always, ``transfer_call`` only when
    its allowlist names at least one number (an empty allowlist means no transfers)."""
    return (END_CALL, TRANSFER_CALL) if transfer_allowlist else (END_CALL,)
