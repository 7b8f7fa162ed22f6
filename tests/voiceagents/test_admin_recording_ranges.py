"""The recording view answers byte ranges (what lets a browser seek), to those allowed only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.test import AsyncClient
from django.urls import reverse

from tests.voiceagents.factories import attach_recording, make_call, wav_bytes
from voiceagents import ranges
from voiceagents.ranges import ByteRange, RangeNotSatisfiable, parse_range

pytestmark = pytest.mark.django_db

#: Long enough that a range crosses several of the view's read blocks.
FRAMES = 40_000


@pytest.fixture
def recording():
    call = make_call()
    data = attach_recording(call, wav_bytes(frames=FRAMES))
    assert len(data) > 2 * ranges.BLOCK_SIZE
    yield call, data
    default_storage.delete(call.recording.name)


def recording_url(call) -> str:
    return reverse("admin:voiceagents_call_recording", args=[call.pk])


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),  # a suffix longer than the file: all of it
        ("bytes=95-200", ByteRange(95, 99)),  # an end past the file: cut to its last byte
        ("BYTES = 5-5", ByteRange(5, 5)),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file
        ("bytes=9-5", None),  # invalid: ignored
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("items=0-9", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=250-"])
def test_parse_range_refuses_ranges_outside_the_file(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_an_empty_file_satisfies_no_range():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-5", 0)


# -- the view ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-43", 0, 43),  # the WAV header alone
        ("bytes=1000-140000", 1000, 140000),  # across read blocks
        ("bytes=150000-", 150000, None),  # to the end
        ("bytes=-1000", -1000, None),  # the last 1000 bytes
        ("bytes=65530-65545", 65530, 65545),  # straddling the first block's end
    ],
)
def test_recording_view_answers_a_range_with_206_and_exactly_those_bytes(
    admin_client, recording, header, start, end
):
    call, data = recording
    size = len(data)
    expected = data[start : None if end is None else end + 1]
    first = start % size

    response = admin_client.get(recording_url(call), headers={"Range": header})

    assert response.status_code == 206
    assert response["Content-Type"] == "audio/wav"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    assert response["Content-Length"] == str(len(expected))
    assert body(response) == expected


def test_recording_view_without_range_sends_the_whole_file_and_says_it_takes_ranges(
    admin_client, recording
):
    call, data = recording

    response = admin_client.get(recording_url(call))

    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(data))
    assert "Content-Range" not in response
    assert f'filename="call-{call.pk}.wav"' in response["Content-Disposition"]
    assert body(response) == data


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=9-5", "lines=1-2"])
def test_recording_view_sends_the_whole_file_for_ranges_it_does_not_serve(
    admin_client, recording, header
):
    call, data = recording

    response = admin_client.get(recording_url(call), headers={"Range": header})

    assert response.status_code == 200
    assert body(response) == data


def test_recording_view_sends_the_whole_file_when_asked_if_range(admin_client, recording):
    # We keep no validator to compare an If-Range with, so the file may have changed: all of it.
    call, data = recording

    response = admin_client.get(
        recording_url(call), headers={"Range": "bytes=0-9", "If-Range": '"abc"'}
    )

    assert response.status_code == 200
    assert body(response) == data


@pytest.mark.parametrize("header", ["bytes=999999-", "bytes=-0"])
def test_recording_view_answers_an_unsatisfiable_range_with_416(admin_client, recording, header):
    call, data = recording

    response = admin_client.get(recording_url(call), headers={"Range": header})

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"


def test_recording_view_head_sends_the_headers_only(admin_client, recording):
    call, data = recording

    response = admin_client.head(recording_url(call), headers={"Range": "bytes=10-19"})

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert response["Content-Length"] == "10"
    assert body(response) == b""


# -- permissions ------------------------------------------------------------------------------


def test_a_range_request_from_a_non_staff_user_goes_to_the_login_page(
    client, django_user_model, recording
):
    call, _ = recording
    client.force_login(django_user_model.objects.create_user("member", password="pw"))

    response = client.get(recording_url(call), headers={"Range": "bytes=0-9"})

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_a_range_request_from_anonymous_goes_to_the_login_page(client, recording):
    call, _ = recording

    response = client.get(recording_url(call), headers={"Range": "bytes=0-9"})

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_a_range_request_from_staff_without_view_call_is_forbidden(
    client, django_user_model, recording
):
    call, _ = recording
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client.force_login(user)

    response = client.get(recording_url(call), headers={"Range": "bytes=0-9"})

    assert response.status_code == 403


def test_a_range_request_from_staff_with_view_call_gets_the_bytes(
    client, django_user_model, recording
):
    call, data = recording
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)

    response = client.get(recording_url(call), headers={"Range": "bytes=100-199"})

    assert response.status_code == 206
    assert body(response) == data[100:200]


# -- under ASGI ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_range_is_streamed_by_an_async_iterator(django_user_model, recording):
    # Given a plain iterator, Django's ASGI handler would read the whole file into a list first.
    call, data = recording
    user = await django_user_model.objects.acreate_superuser("root", "root@example.com", "pw")
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.get(recording_url(call), headers={"Range": "bytes=1000-140000"})

    assert response.status_code == 206
    assert response.is_async
    received = [chunk async for chunk in response.streaming_content]
    assert b"".join(received) == data[1000:140001]
    assert max(len(chunk) for chunk in received) <= ranges.BLOCK_SIZE
    assert len(received) == -(-139001 // ranges.BLOCK_SIZE)
