"""The call changelist's "Hang up" action sends the command through the channel layer."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.urls import reverse

from voiceagents.call.control import call_group
from voiceagents.models import Call, CallStatus

pytestmark = pytest.mark.django_db


def listen(call):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_group(call.pk), channel)
    return layer, channel


def receive(layer, channel):
    import asyncio

    async def get():
        return await asyncio.wait_for(layer.receive(channel), 1)

    return async_to_sync(get)()


def post_action(client, calls):
    return client.post(
        reverse("admin:voiceagents_call_changelist"),
        {"action": "hang_up", "_selected_action": [str(c.pk) for c in calls]},
        follow=True,
    )


def test_hang_up_action_reaches_live_calls_only(admin_client):
    live = Call.objects.create(carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS)
    done = Call.objects.create(carrier="twilio", direction="inbound", status=CallStatus.COMPLETED)
    layer, channel = listen(live)
    _, done_channel = listen(done)
    response = post_action(admin_client, [live, done])
    assert "Hang-up sent to 1 live call." in response.content.decode()
    assert "1 call was not live" in response.content.decode()
    assert receive(layer, channel) == {
        "type": "call.hangup",
        "reason": "operator_hangup",
        "group": call_group(live.pk),
    }
    with pytest.raises(TimeoutError):
        receive(layer, done_channel)


def test_hang_up_action_needs_the_change_call_permission(client, django_user_model):
    Call.objects.create(carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS)
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)
    page = client.get(reverse("admin:voiceagents_call_changelist")).content.decode()
    assert "hang_up" not in page
    user.user_permissions.add(Permission.objects.get(codename="change_call"))
    page = client.get(reverse("admin:voiceagents_call_changelist")).content.decode()
    assert "hang_up" in page
