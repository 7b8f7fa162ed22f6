"""The calls list: few, readable columns, filters by end reason and date, search in transcripts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from tests.voiceagents.factories import add_transcript, attach_recording, make_agent, make_call
from tests.voiceagents.htmltree import parse
from voiceagents.models import Call, CallStatus, Direction

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:voiceagents_call_changelist"


def listed(client, **params) -> list[Call]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def rows(client, **params) -> list[dict[str, str]]:
    """Each listed call's cells by column name (``field-<name>``)."""
    response = client.get(reverse(CHANGELIST), params)
    table = parse(response.content.decode()).by_id("result_list")
    return [
        {
            cls[len("field-") :]: cell.text
            for cell in row.all()
            if cell.tag in ("td", "th")
            for cls in cell.classes
            if cls.startswith("field-")
        }
        for row in table.one(tag="tbody").all(tag="tr")
    ]


@pytest.fixture
def answered_call():
    call = make_call(
        agent=make_agent(name="Front desk"),
        from_number="+12025550123",
        to_number="+14155550100",
        status=CallStatus.COMPLETED,
        end_reason="caller_hangup",
        duration=dt.timedelta(seconds=71, microseconds=679380),
    )
    attach_recording(call)
    yield call
    default_storage.delete(call.recording.name)


def test_the_list_shows_six_compact_columns(admin_client, answered_call):
    page = parse(admin_client.get(reverse(CHANGELIST)).content.decode())

    thead = page.by_id("result_list").one(tag="thead")
    headers = [th.text for th in thead.all(tag="th")][1:]  # after the checkbox
    assert headers == ["When", "From → to", "Agent", "Status", "Duration", "Recording"]


def test_a_row_shows_from_to_status_with_reason_and_duration_as_minutes(
    admin_client, answered_call
):
    [row] = rows(admin_client)

    assert row["from_to"] == "+12025550123 → +14155550100"
    assert row["agent_name"] == "Front desk"
    assert row["status_and_reason"] == "completed · caller hung up"
    assert row["length_and_reply"] == "1:11"
    local = timezone.localtime(answered_call.created_at)
    assert row["when"].startswith(local.strftime("%m/%d/%Y"))


def test_the_recording_column_links_to_the_recording_only_when_there_is_one(
    admin_client, answered_call
):
    silent = make_call(status=CallStatus.FAILED, end_reason="no_agent")

    page = parse(admin_client.get(reverse(CHANGELIST)).content.decode())

    links = page.by_id("result_list").all("call-recording-link")
    assert [link.attrs["href"] for link in links] == [
        reverse("admin:voiceagents_call_recording", args=[answered_call.pk])
    ]
    assert [r["status_and_reason"] for r in rows(admin_client, q=silent.from_number)] == [
        "failed · no agent on the number"
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0:00"), (11.68, "0:11"), (600, "10:00"), (3725, "1:02:05"), (None, "—")],
)
def test_durations_are_minutes_and_seconds_or_hours(admin_client, seconds, shown):
    make_call(duration=None if seconds is None else dt.timedelta(seconds=seconds))

    assert [row["length_and_reply"] for row in rows(admin_client)] == [shown]


def test_a_status_without_end_reason_is_the_status_alone(admin_client):
    make_call(status=CallStatus.IN_PROGRESS)

    assert [row["status_and_reason"] for row in rows(admin_client)] == ["in progress"]


def test_an_end_reason_the_page_does_not_know_is_still_readable(admin_client):
    make_call(status=CallStatus.FAILED, end_reason="carrier_went_away")

    assert [row["status_and_reason"] for row in rows(admin_client)] == [
        "failed · carrier went away"
    ]


# -- filters ---------------------------------------------------------------------------------


@pytest.fixture
def calls_of_two_days():
    hung_up = make_call(status=CallStatus.COMPLETED, end_reason="caller_hangup")
    refused = make_call(status=CallStatus.FAILED, end_reason="agent_disabled")
    old = make_call(status=CallStatus.COMPLETED, end_reason="max_duration")
    Call.objects.filter(pk=old.pk).update(created_at=dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC))
    return hung_up, refused, old


def test_the_end_reason_filter_offers_the_reasons_in_words_and_narrows_the_list(
    admin_client, calls_of_two_days
):
    hung_up, refused, old = calls_of_two_days

    response = admin_client.get(reverse(CHANGELIST))
    [spec] = [s for s in response.context["cl"].filter_specs if s.title == "end reason"]
    choices = {c["display"]: c["query_string"] for c in spec.choices(response.context["cl"])}
    assert set(choices) == {"All", "agent disabled", "caller hung up", "time limit reached"}
    assert choices["caller hung up"] == "?end_reason=caller_hangup"

    assert listed(admin_client, end_reason="agent_disabled") == [refused]
    assert listed(admin_client, end_reason="max_duration") == [old]


def test_the_date_filter_narrows_the_list_to_today(admin_client, calls_of_two_days):
    hung_up, refused, old = calls_of_two_days

    response = admin_client.get(reverse(CHANGELIST))
    cl = response.context["cl"]
    [spec] = [s for s in cl.filter_specs if s.title == "created"]
    today = {c["display"]: c["query_string"] for c in spec.choices(cl)}["Today"]
    found = admin_client.get(reverse(CHANGELIST) + today).context["cl"].result_list

    assert set(found) == {hung_up, refused}


def test_direction_and_carrier_filters_stay(admin_client):
    twilio_in = make_call(carrier="twilio", direction=Direction.INBOUND)
    telnyx_out = make_call(carrier="telnyx", direction=Direction.OUTBOUND)

    assert listed(admin_client, carrier__exact="telnyx") == [telnyx_out]
    assert listed(admin_client, direction__exact="inbound") == [twilio_in]


# -- search ----------------------------------------------------------------------------------


def test_searching_transcript_words_lists_a_call_once_however_many_turns_match(admin_client):
    agent = make_agent(name="Billing")
    call = make_call(agent=agent)
    add_transcript(
        call,
        {"seq": 1, "role": "caller", "text": "A refund please."},
        {"seq": 2, "role": "agent", "text": "Your refund is on its way."},
        {"seq": 3, "role": "caller", "text": "Thanks for the refund."},
    )
    make_call(agent=agent)

    response = admin_client.get(reverse(CHANGELIST), {"q": "refund", "agent__id__exact": agent.pk})

    assert list(response.context["cl"].result_list) == [call]
    assert response.context["cl"].result_count == 1
    assert len(rows(admin_client, q="refund")) == 1


def test_search_finds_a_call_by_either_number(admin_client):
    call = make_call(from_number="+12025550999", to_number="+14155550777")
    make_call()

    assert listed(admin_client, q="+12025550999") == [call]
    assert listed(admin_client, q="4155550777") == [call]
