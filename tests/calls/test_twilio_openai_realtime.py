"""Twilio calls answered by an OpenAI Realtime agent, through the media consumer and the session."""

import asyncio
import base64

import pytest
from asgiref.sync import sync_to_async

from voiceagents.models import Call, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)


def tone(ms: int, byte: int = 0x10) -> bytes:
    return bytes([byte, byte ^ 0x80]) * (ms * 4)


async def test_caller_audio_reaches_openai_byte_identical_and_first_message_plays(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters)
    audio = bytes(range(256)) * 12  # 3072 bytes, 384 ms
    await caller.stream_audio(audio, realtime=False)
    await fake_openai.wait_for(lambda: fake_openai.sessions and len(fake_openai.session.audio_in) >= len(audio))
    assert bytes(fake_openai.session.audio_in) == audio

    update = fake_openai.events_of("session.update")[0]["session"]
    assert update["instructions"] == "You work for Acme."
    assert update["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert update["audio"]["output"]["voice"] == "alloy"
    first = fake_openai.events_of("response.create")[0]
    assert "Hello from Acme!" in first["response"]["instructions"]

    # The default fake reply is 200 ms of audio: it reaches "Twilio" paced in 20 ms frames, with marks.
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    assert all(len(base64.b64decode(f["media"]["payload"])) == 160 for f in caller.events("media"))
    assert caller.events("mark")
    await caller.stop()
    await caller.wait_closed()

    call = await Call.objects.aget(pk=setup.call.pk)
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "caller_hangup"
    assert call.duration is not None
    entries = [e async for e in TranscriptEntry.objects.filter(call=call).order_by("seq")]
    assert entries[0].role == "agent"
    assert "Hello from Acme!" in entries[0].text
    assert call.metrics["frames_in"] == -(-len(audio) // 160)  # the last frame is partial


async def test_stream_with_forged_token_is_closed_before_any_provider_connection(
    create_call, connect_caller, fake_openai
):
    setup = await create_call()
    connected, caller = await connect_caller()
    await caller.connected()
    await caller.start({"call_id": str(setup.call.pk), "stream_token": setup.token[:-2] + "xx"})
    assert await caller.wait_closed() == 1008
    assert fake_openai.connection_attempts == 0
