"""The control plane: commands reach the consumer that joined the call's group."""

import uuid

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import WebsocketCommunicator

from voiceagents.call.control import asend_call_command, call_group


class GroupMember(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.call_id = self.scope["url_route"]["kwargs"]["call_id"]
        await self.channel_layer.group_add(call_group(self.call_id), self.channel_name)
        await self.accept()

    async def call_hangup(self, message):
        await self.send_json(message)


def test_group_name_is_valid_for_channels():
    from channels.layers import BaseChannelLayer

    call_id = uuid.uuid4()
    name = call_group(call_id)
    assert name == f"call.{call_id}"
    assert BaseChannelLayer().require_valid_group_name(name)


# Channels' default dispatch closes old database connections before each handler.
@pytest.mark.django_db(transaction=True)
async def test_hangup_reaches_the_consumer_of_that_call_only():
    call_id, other = uuid.uuid4(), uuid.uuid4()
    app = GroupMember.as_asgi()
    ours = WebsocketCommunicator(
        app,
        "/",
    )
    ours.scope["url_route"] = {"kwargs": {"call_id": str(call_id)}}
    theirs = WebsocketCommunicator(app, "/")
    theirs.scope["url_route"] = {"kwargs": {"call_id": str(other)}}
    assert (await ours.connect(timeout=5))[0]
    assert (await theirs.connect(timeout=5))[0]
    try:
        await asend_call_command(call_id, "hangup", reason="operator")
        assert await ours.receive_json_from(timeout=5) == {
            "type": "call.hangup",
            "reason": "operator",
            "group": call_group(call_id),  # what the process's one reader routes by
        }
        assert await theirs.receive_nothing(timeout=0.2)
    finally:
        await ours.disconnect()
        await theirs.disconnect()


async def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="hangup"):
        await asend_call_command(uuid.uuid4(), "explode")
