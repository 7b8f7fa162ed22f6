"""What a call used, as the vendors count it, reaches ``Call.metrics["usage"]``; ``finalize_call``
prices it with the carrier's minutes into ``Call.cost``. (The pipeline's counts are tested with
its calls, in test_pipeline_calls.py.)"""

from __future__ import annotations

import math

import pytest
from asgiref.sync import sync_to_async

from tests.fakes.openai_realtime import ScriptedResponse
from voiceagents.costs import DEFAULT_RATES
from voiceagents.models import Call
from voiceagents.providers.openai_realtime import DEFAULT_TRANSCRIPTION_MODEL
from voiceagents.services import finalize_call

pytestmark = pytest.mark.django_db(transaction=True)


def priced(cost: dict) -> dict[tuple[str, str], float]:
    return {(item["service"], item["unit"]): item["amount"] for item in cost["items"]}


async def test_a_realtime_call_is_costed_from_openais_token_counts(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    # The greeting: the fake's default counts (120 text + 60 audio tokens in, 20 of them cached;
    # 15 text + 50 audio tokens out).
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    await fake_openai.caller_transcript(
        "item_c1", "What time is it?", usage={"type": "duration", "seconds": 2.5}
    )
    await fake_openai.respond(
        ScriptedResponse(audio=b"\x7f" * 800, transcript="Noon.", tokens=(200, 100, 0, 5, 30))
    )
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 2400)
    await caller.stop()
    await caller.wait_closed()

    call = await Call.objects.aget(pk=setup.call.pk)
    model = call.metrics["usage"][0]["model"]
    assert call.metrics["usage"] == [
        {
            "service": "openai_realtime",
            "model": model,
            "input_text_tokens": 320,
            "input_audio_tokens": 140,
            "cached_input_audio_tokens": 20,
            "output_text_tokens": 20,
            "output_audio_tokens": 80,
        },
        {
            "service": "openai_transcription",
            "model": DEFAULT_TRANSCRIPTION_MODEL,
            "audio_seconds": 2.5,
        },
    ]
    assert model == "gpt-realtime-mini"  # the agent left it blank: the spec's default

    await sync_to_async(finalize_call)(call.pk)
    await call.arefresh_from_db()
    rates = DEFAULT_RATES["services"]["openai_realtime"][model]
    minutes = math.ceil(call.duration.total_seconds() / 60)
    amounts = priced(call.cost)
    assert amounts[("twilio", "minute")] == pytest.approx(minutes * 0.0085)
    assert amounts[("openai_realtime", "output audio token")] == pytest.approx(
        80 * rates["output_audio_tokens"]
    )
    assert amounts[("openai_realtime", "cached input audio token")] == pytest.approx(
        20 * rates["cached_input_audio_tokens"]
    )
    assert amounts[("openai_transcription", "second of audio")] == pytest.approx(
        2.5
        * DEFAULT_RATES["services"]["openai_transcription"][DEFAULT_TRANSCRIPTION_MODEL][
            "audio_seconds"
        ]
    )
    assert call.cost["total"] == pytest.approx(sum(amounts.values()))
    assert call.cost["currency"] == "USD" and call.cost["unpriced"] == []
