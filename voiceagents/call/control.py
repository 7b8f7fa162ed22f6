"""The control plane: commands to live calls through the channel layer.

Each live call's media consumer joins the group ``call_group(call_id)``; the admin and Celery send
``hangup``, ``transfer`` and ``say`` there, and whichever process holds the call acts on it.
``amd`` (``answered_by=...``) carries an outbound call's answering-machine verdict from the
carrier's webhook to the call (``voiceagents.outbound.amd_result``).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

#: Message types consumers handle (Channels maps "call.hangup" to ``call_hangup``).
COMMANDS = frozenset({"hangup", "transfer", "say", "amd"})


def call_group(call_id) -> str:
    """The channel-layer group of one live call (group names allow only ASCII letters, digits, -_.)."""
    return f"call.{call_id}"


def _message(command: str, params: dict) -> dict:
    if command not in COMMANDS:
        raise ValueError(f"Unknown call command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    return {"type": f"call.{command}", **params}


async def asend_call_command(call_id, command: str, **params) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer is configured (settings.CHANNEL_LAYERS)")
    await layer.group_send(call_group(call_id), _message(command, params))


def send_call_command(call_id, command: str, **params) -> None:
    async_to_sync(asend_call_command)(call_id, command, **params)
