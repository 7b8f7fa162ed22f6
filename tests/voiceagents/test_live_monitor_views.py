"""The live monitor's pages: what the page starts from, who may see it, and its hang-up."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from voiceagents.call.control import call_group
from voiceagents.models import CallStatus

from .factories import add_transcript, make_agent, make_call

pytestmark = pytest.mark.django_db

PAGE = reverse("voiceagents:monitor")
STATE = reverse("voiceagents:monitor_state")


def hang_up_url(call) -> str:
    return reverse("voiceagents:monitor_hang_up", args=[call.pk])


def staff(django_user_model, name: str, *perms: str) -> Client:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


def listen(call):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_group(call.pk), channel)
    return layer, channel


def received(layer, channel, timeout: float = 1.0):
    import asyncio

    async def get():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(get)()


def live_calls(count: int, lines: int):
    agent = make_agent(name="Front desk")
    calls = []
    for n in range(count):
        call = make_call(agent=agent, status=CallStatus.IN_PROGRESS)
        add_transcript(
            call,
            *(
                {"seq": i, "role": "caller" if i % 2 else "agent", "text": f"line {n}.{i}"}
                for i in range(lines)
            ),
        )
        calls.append(call)
    return calls


def test_the_page_lists_live_calls_with_their_transcript_so_far(admin_client):
    ringing = make_call(status=CallStatus.RINGING, from_number="+12025550111")
    talking = make_call(agent=make_agent(name="Front desk"), status=CallStatus.IN_PROGRESS)
    add_transcript(
        talking,
        {"seq": 1, "role": "caller", "text": "Can I move my cleaning?", "start_ms": 72_500},
        {"seq": 0, "role": "agent", "text": "Hi, this is Acme Dental.", "start_ms": 0},
        {"seq": 2, "role": "agent", "text": "Of course, which", "interrupted": True},
    )
    over = make_call(status=CallStatus.COMPLETED, from_number="+12025550999")
    add_transcript(over, {"seq": 0, "role": "caller", "text": "Goodbye then."})

    response = admin_client.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-call-id="{ringing.pk}"' in page and f'data-call-id="{talking.pk}"' in page
    assert str(over.pk) not in page and "Goodbye then." not in page
    assert "+12025550111" in page and "Front desk" in page
    texts = [line["text"] for line in response.context["calls"][1]["lines"]]
    assert texts == ["Hi, this is Acme Dental.", "Can I move my cleaning?", "Of course, which"]
    assert '<span class="offset">1:12</span>' in page and "(cut off)" in page
    assert page.count(">Hang up</button>") == 2
    assert 'data-socket-path="/voiceagents/monitor/"' in page


def test_the_page_reads_the_database_in_the_same_queries_for_any_number_of_calls_and_lines(
    admin_client,
):
    live_calls(1, 1)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(PAGE)
    live_calls(5, 6)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(PAGE)
    assert len(response.context["calls"]) == 6
    assert len(many.captured_queries) == len(few.captured_queries)


def test_anyone_but_staff_is_sent_to_the_login(client, django_user_model):
    user = django_user_model.objects.create_user("member", password="pw", is_staff=False)
    client.force_login(user)
    for url in (PAGE, STATE):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    call = make_call(status=CallStatus.IN_PROGRESS)
    assert client.post(hang_up_url(call)).status_code == 302


def test_staff_who_may_not_view_calls_are_refused(django_user_model):
    client = staff(django_user_model, "agent-editor", "change_agent")
    assert client.get(PAGE).status_code == 403
    assert client.get(STATE).status_code == 403


def test_the_state_has_the_live_calls_and_the_calls_asked_for(admin_client):
    live = make_call(status=CallStatus.IN_PROGRESS)
    over = make_call(status=CallStatus.COMPLETED, end_reason="operator_hangup")
    add_transcript(over, {"seq": 0, "role": "caller", "text": "Bye.", "start_ms": 1500})
    calls = admin_client.get(STATE, {"call": [str(over.pk)]}).json()["calls"]
    by_id = {call["call_id"]: call for call in calls}
    assert set(by_id) == {str(live.pk), str(over.pk)}
    assert by_id[str(over.pk)]["live"] is False
    assert by_id[str(over.pk)]["end_reason"] == "operator_hangup"
    assert by_id[str(over.pk)]["lines"] == [
        {
            "seq": 0,
            "role": "caller",
            "text": "Bye.",
            "offset_ms": 1500,
            "offset": "0:01",
            "interrupted": False,
        }
    ]
    bad = admin_client.get(STATE, {"call": "not-a-call"})
    assert bad.status_code == 400 and "UUID" in bad.json()["error"]


def test_hang_up_sends_the_command_to_the_call_through_the_control_plane(admin_client):
    call = make_call(status=CallStatus.IN_PROGRESS)
    layer, channel = listen(call)
    response = admin_client.post(hang_up_url(call), HTTP_ACCEPT="application/json")
    assert response.status_code == 202 and response.json()["ok"] is True
    assert received(layer, channel) == {
        "type": "call.hangup",
        "reason": "operator_hangup",
        "group": call_group(call.pk),
    }


def test_hang_up_from_a_plain_form_returns_to_the_page_with_a_message(admin_client):
    call = make_call(status=CallStatus.RINGING)
    layer, channel = listen(call)
    response = admin_client.post(hang_up_url(call), follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert "Hang-up sent." in response.content.decode()
    assert received(layer, channel)["type"] == "call.hangup"


def test_hang_up_of_an_ended_call_says_so_and_sends_nothing(admin_client):
    call = make_call(status=CallStatus.COMPLETED)
    layer, channel = listen(call)
    response = admin_client.post(hang_up_url(call), HTTP_ACCEPT="application/json")
    assert response.status_code == 409 and "ended already" in response.json()["message"]
    with pytest.raises(TimeoutError):
        received(layer, channel, 0.2)


def test_hang_up_needs_the_change_call_permission_a_post_and_the_csrf_token(django_user_model):
    call = make_call(status=CallStatus.IN_PROGRESS)
    layer, channel = listen(call)
    viewer = staff(django_user_model, "viewer", "view_call")
    assert viewer.post(hang_up_url(call)).status_code == 403
    assert ">Hang up</button>" not in viewer.get(PAGE).content.decode()
    operator = staff(django_user_model, "operator", "view_call", "change_call")
    assert operator.get(hang_up_url(call)).status_code == 405
    operator.enforce_csrf_checks = True
    operator.handler.enforce_csrf_checks = True
    assert operator.post(hang_up_url(call)).status_code == 403
    with pytest.raises(TimeoutError):
        received(layer, channel, 0.2)


def test_the_calls_list_and_every_admin_page_link_to_the_monitor(admin_client):
    page = admin_client.get(reverse("admin:voiceagents_call_changelist")).content.decode()
    assert f'<a href="{PAGE}" id="live-monitor-link">Live monitor</a>' in page
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{PAGE}"' in index


def test_the_page_describes_itself_to_its_script(admin_client):
    page = admin_client.get(PAGE).content.decode()
    assert f'data-state-url="{STATE}"' in page
    any_call = "00000000-0000-0000-0000-000000000000"
    assert f'data-hang-up-url="{reverse("voiceagents:monitor_hang_up", args=[any_call])}"' in page
    assert json.dumps({"calls": []}) == json.dumps(admin_client.get(STATE).json())
