"""The control plane: commands to live calls through the channel layer.

Each live call's media consumer joins the group ``call_group(call_id)``; the admin and Celery send
``hangup``, ``transfer`` and ``say`` there, and whichever process holds the call acts on it
(docs/call-control.md). A ``transfer`` is checked with ``operator_transfer_refusal`` by the sender
and again by the process holding the call. ``amd`` (``answered_by=...``) carries an outbound
call's answering-machine verdict from the carrier's webhook to the call
(``voiceagents.outbound.amd_result``).
"""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ..conf import get_setting
from ..validators import E164_RE

#: Message types consumers handle (Channels maps "call.hangup" to ``call_hangup``).
COMMANDS = frozenset({"hangup", "transfer", "say", "amd"})


def call_group(call_id) -> str:
    """The channel-layer group of one live call (group names allow only ASCII letters, digits, -_.)."""
    return f"call.{call_id}"


def transfer_allowed_numbers() -> tuple[str, ...]:
    """``VOICEAGENTS["TRANSFER_ALLOWED_NUMBERS"]``: numbers operators may transfer any call to."""
    value = get_setting("TRANSFER_ALLOWED_NUMBERS", cast=list) or ()
    return (value,) if isinstance(value, str) else tuple(str(n) for n in value)


def operator_transfer_refusal(number: str, agent_allowlist: Iterable[str]) -> str:
    """Why an operator may not transfer a call to ``number`` ('' when they may).

    Operators are held to the same closed list as agents, widened by ``TRANSFER_ALLOWED_NUMBERS``:
    a stolen admin session must not be able to bridge callers to premium-rate numbers
    (docs/security.md#transfers).
    """
    if not E164_RE.match(number or ""):
        return (
            f"{number or 'no number'} is not a phone number in international format (+14155550100)"
        )
    if number not in set(agent_allowlist) | set(transfer_allowed_numbers()):
        return (
            f"{number} is neither on the agent's transfer allowlist nor in TRANSFER_ALLOWED_NUMBERS"
        )
    return ""


def _message(call_id, command: str, params: dict) -> dict:
    if command not in COMMANDS:
        raise ValueError(f"Unknown call command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    # ``group``: the process holding the call reads every call's messages on one channel
    # (telephony.controlplane.ControlHub) and routes them by it.
    return {**params, "type": f"call.{command}", "group": call_group(call_id)}


async def asend_call_command(call_id, command: str, **params) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer is configured (settings.CHANNEL_LAYERS)")
    await layer.group_send(call_group(call_id), _message(call_id, command, params))


def send_call_command(call_id, command: str, **params) -> None:
    async_to_sync(asend_call_command)(call_id, command, **params)
