"""Any frame a carrier (or anyone holding the socket) sends is counted and ignored if it is bad; the
live call keeps streaming both ways. Run for every carrier through ``tests/calls/harness.py``."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_realtime import ScriptedResponse
from voiceagents.models import Call, CallStatus

pytestmark = pytest.mark.django_db(transaction=True)


async def streams_both_ways(harness, caller, fake_openai, tries: int = 8) -> None:
    """Caller audio still reaches the provider and agent audio still reaches the caller."""
    before = len(fake_openai.session.audio_in)
    for _ in range(tries):  # a few: frames given up by the reorder window come back in order
        await caller.media(b"\x55" * harness.frame_bytes)
        try:
            await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) > before, 0.3)
            break
        except AssertionError:
            continue
    assert len(fake_openai.session.audio_in) > before, "caller audio no longer reaches OpenAI"
    heard = len(caller.media_in)
    await fake_openai.respond(ScriptedResponse(audio=b"\x2a" * 320, transcript="Still here."))
    await fake_openai.wait_for(lambda: len(caller.media_in) > heard)


async def live(harness, streams, fake_openai):
    incoming, caller, transport = await streams.call(harness)
    await caller.media(b"\x01" * harness.frame_bytes)
    await fake_openai.wait_for(lambda: fake_openai.sessions and fake_openai.session.audio_in)
    await fake_openai.wait_for(lambda: caller.media_in)  # the first message plays
    return incoming, caller, transport


async def hang_up(caller, incoming) -> Call:
    await caller.stop()
    await caller.closed.wait()
    return await Call.objects.aget(pk=incoming.call_id)


# Frames that broke calls, or could: wrong types anywhere, lists where strings belong, bad base64,
# huge and non-finite numbers, a number that would make the recording pad hours of silence.
BAD_FRAMES = {
    "event-list": {"event": ["media"]},
    "event-object": {"event": {"media": 1}},
    "track-list": {"event": "media", "media": {"track": ["inbound"], "payload": "VVVV"}},
    "media-list": {"event": "media", "media": ["payload"]},
    "payload-list": {"event": "media", "media": {"payload": ["VVVV"]}},
    "payload-bad-base64": {"event": "media", "media": {"payload": "***"}},
    "mark-name-object": {"event": "mark", "mark": {"name": {"a": [1]}}},
    "dtmf-digit-list": {"event": "dtmf", "dtmf": {"digit": ["1"]}},
    "dtmf-digit-word": {"event": "dtmf", "dtmf": {"digit": "hello"}},
    "start-again-list": {"event": "start", "start": ["call_id"]},
    "stop-list": {"event": ["stop"]},
    "top-level-number": 42,
    "top-level-null": None,
    "huge-string": {"event": "x" * 60_000},
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_malformed_frame_is_counted_and_the_call_goes_on(
    harness, streams, fake_openai, name
):
    incoming, caller, transport = await live(harness, streams, fake_openai)
    await transport.send(json.dumps(BAD_FRAMES[name]))
    await streams_both_ways(harness, caller, fake_openai)
    call = await hang_up(caller, incoming)
    assert call.status == CallStatus.COMPLETED
    assert call.metrics["malformed_frames"] == 1


@pytest.mark.parametrize(
    "media",
    [
        {"timestamp": "600000", "chunk": "3"},  # Twilio: 10 minutes ahead of the call clock
        {"timestamp": "Infinity", "chunk": "1000000000000"},  # Telnyx: a chunk from nowhere
        {"timestamp": 1e308, "chunk": 1e308},
        {"chunk": "400"},  # Telnyx: a plausible jump; later frames must not all be "late"
    ],
    ids=["far-timestamp", "far-chunk", "huge-floats", "chunk-ahead"],
)
async def test_numbers_far_off_neither_mute_the_call_nor_bloat_the_recording(
    harness, streams, fake_openai, media
):
    incoming, caller, transport = await live(harness, streams, fake_openai)
    frame = {"event": "media", "media": {"payload": "VVVV" * 40, "track": "inbound", **media}}
    await transport.send(json.dumps(frame).replace('"Infinity"', "Infinity"))
    await streams_both_ways(harness, caller, fake_openai)
    call = await hang_up(caller, incoming)
    assert call.status == CallStatus.COMPLETED
    assert call.recording_duration is not None
    assert call.recording_duration.total_seconds() < 30


# -- arbitrary JSON ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
#: Frames shaped like the carriers' (every event but ``stop``, which would end the call).
EVENTS = ["media", "mark", "dtmf", "start", "connected", "error", "clear", "media "]
frame_like = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS) | json_values},
    optional={
        "media": st.fixed_dictionaries(
            {},
            optional={
                "payload": st.sampled_from(["VVVV", "", "***", "VV=V"]) | json_values,
                "track": st.sampled_from(["inbound", "outbound", "inbound_track"]) | json_values,
                "chunk": st.integers() | json_values,
                "timestamp": st.integers() | json_values,
            },
        )
        | json_values,
        "mark": st.fixed_dictionaries({"name": json_values}) | json_values,
        "dtmf": st.fixed_dictionaries({"digit": json_values}) | json_values,
        "start": json_values,
        "sequence_number": st.integers() | json_values,
        "streamSid": json_values,
    },
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(frame_like | json_values, min_size=1, max_size=4))
async def test_arbitrary_json_never_stops_a_live_call(harness, streams, fake_openai, frames):
    # One live call for all examples (the fixtures are per test): each throws its frames at it.
    if not hasattr(streams, "live"):
        streams.live = await live(harness, streams, fake_openai)
    _, caller, transport = streams.live
    for frame in frames:
        await transport.send(json.dumps(frame))
    assert not caller.closed.is_set()
    await streams_both_ways(harness, caller, fake_openai)
