"""The call page's "Hang up", "Transfer to…" and "Say…" on a live call, through the channel layer."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.urls import reverse

from voiceagents.call.control import call_group
from voiceagents.models import Agent, Call, CallStatus

pytestmark = pytest.mark.django_db

TARGET = "+14155550123"


@pytest.fixture
def live_call():
    agent = Agent.objects.create(name="Desk", slug="desk", transfer_allowlist=[TARGET])
    return Call.objects.create(
        carrier="twilio", direction="inbound", status=CallStatus.IN_PROGRESS, agent=agent
    )


def listen(call):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_group(call.pk), channel)
    return layer, channel


def receive(layer, channel, timeout: float = 1.0):
    async def get():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(get)()


def act(client, call, action, data=None):
    url = reverse("admin:voiceagents_call_action", args=[call.pk, action])
    return client.post(url, data or {}, follow=True)


def page_of(response) -> str:
    return response.content.decode()


def test_the_page_of_a_live_call_offers_the_actions(admin_client, live_call):
    page = page_of(admin_client.get(reverse("admin:voiceagents_call_change", args=[live_call.pk])))
    for action in ("hang-up", "transfer", "say"):
        assert reverse("admin:voiceagents_call_action", args=[live_call.pk, action]) in page
    assert f'<option value="{TARGET}">' in page
    # Outside the record's own form: forms may not nest.
    assert page.index('id="call-actions"') < page.index('id="call_form"')


def test_the_page_of_an_ended_call_offers_none(admin_client, live_call):
    Call.objects.filter(pk=live_call.pk).update(status=CallStatus.COMPLETED)
    page = page_of(admin_client.get(reverse("admin:voiceagents_call_change", args=[live_call.pk])))
    assert "call-actions" not in page


def test_hang_up(admin_client, live_call):
    layer, channel = listen(live_call)
    response = act(admin_client, live_call, "hang-up")
    assert "Hang-up sent." in page_of(response)
    assert receive(layer, channel) == {
        "type": "call.hangup",
        "reason": "operator_hangup",
        "group": call_group(live_call.pk),
    }


def test_transfer_to_a_number_of_the_agents_list(admin_client, live_call):
    layer, channel = listen(live_call)
    response = act(admin_client, live_call, "transfer", {"number": "+1 (415) 555-0123"})
    assert f"Transfer to {TARGET} sent" in page_of(response)
    assert receive(layer, channel) == {
        "type": "call.transfer",
        "number": TARGET,
        "announcement": "",
        "group": call_group(live_call.pk),
    }


def test_transfer_to_a_number_of_the_setting(admin_client, live_call, settings):
    settings.VOICEAGENTS = {**settings.VOICEAGENTS, "TRANSFER_ALLOWED_NUMBERS": ["+442071838750"]}
    layer, channel = listen(live_call)
    act(
        admin_client, live_call, "transfer", {"number": "+442071838750", "announcement": "Hold on."}
    )
    assert receive(layer, channel) == {
        "type": "call.transfer",
        "number": "+442071838750",
        "announcement": "Hold on.",
        "group": call_group(live_call.pk),
    }


@pytest.mark.parametrize(
    ("number", "why"),
    [("+19005550000", "transfer allowlist"), ("555-0123", "international format")],
)
def test_transfer_elsewhere_is_refused_and_nothing_sent(admin_client, live_call, number, why):
    layer, channel = listen(live_call)
    page = page_of(act(admin_client, live_call, "transfer", {"number": number}))
    assert "Not transferred" in page and why in page
    with pytest.raises(TimeoutError):
        receive(layer, channel, 0.2)


def test_say(admin_client, live_call):
    layer, channel = listen(live_call)
    page = page_of(act(admin_client, live_call, "say", {"text": "Your table is ready."}))
    assert "Sent to the agent." in page
    assert receive(layer, channel) == {
        "type": "call.say",
        "text": "Your table is ready.",
        "group": call_group(live_call.pk),
    }


@pytest.mark.parametrize("action", ["hang-up", "transfer", "say"])
def test_nothing_is_sent_to_a_call_that_is_not_live(admin_client, live_call, action):
    Call.objects.filter(pk=live_call.pk).update(status=CallStatus.COMPLETED)
    layer, channel = listen(live_call)
    page = page_of(act(admin_client, live_call, action, {"number": TARGET, "text": "Hi"}))
    assert "The call is not live" in page
    with pytest.raises(TimeoutError):
        receive(layer, channel, 0.2)


def test_the_actions_need_the_change_call_permission(client, django_user_model, live_call):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)
    page = page_of(client.get(reverse("admin:voiceagents_call_change", args=[live_call.pk])))
    assert "call-actions" not in page
    layer, channel = listen(live_call)
    assert act(client, live_call, "hang-up").status_code == 403
    with pytest.raises(TimeoutError):
        receive(layer, channel, 0.2)


def test_the_actions_are_post_only_and_csrf_protected(admin_user, live_call):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    url = reverse("admin:voiceagents_call_action", args=[live_call.pk, "hang-up"])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token


def test_the_timeline_tells_transfers_and_says(admin_client):
    from tests.voiceagents.factories import add_event, make_call
    from tests.voiceagents.test_admin_call_page import call_page
    from voiceagents.models import CallEventKind

    call = make_call()
    transfer = CallEventKind.TRANSFER
    add_event(call, transfer, at_ms=1000,
              data={"number": TARGET, "by": "agent", "allowed": True, "done": True})  # fmt: skip
    add_event(call, transfer, at_ms=2000,
              data={"number": TARGET, "by": "operator", "allowed": True, "done": False,
                    "error": "Telnyx transfer refused: Destination not permitted."})  # fmt: skip
    add_event(call, transfer, at_ms=3000,
              data={"number": "+19005550000", "by": "operator", "allowed": False})  # fmt: skip
    add_event(call, CallEventKind.OTHER, at_ms=4000,
              data={"action": "say", "by": "operator", "text": "Your table is ready."})  # fmt: skip
    page, _ = call_page(admin_client, call)
    rows = page.by_id("call-timeline").all(tag="tr")[1:]
    assert [[td.text for td in row.all(tag="td")][1] for row in rows] == [
        f"The agent asked to transfer the call to {TARGET}: transferred",
        f"An operator asked to transfer the call to {TARGET}: not carried out (Telnyx transfer "
        "refused: Destination not permitted.)",
        "An operator asked to transfer the call to +19005550000: refused, not a number transfers may "
        "go to",
        "An operator had the agent say: Your table is ready.",
    ]
