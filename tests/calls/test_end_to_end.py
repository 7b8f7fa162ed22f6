"""One whole inbound call under a real ASGI server, over real sockets.

The project's ASGI application runs under uvicorn on a free loopback port in this process (so it
shares the test database); httpx plays Twilio's voice webhook, a ``websockets`` client plays the
Media Stream, and the fake OpenAI Realtime server answers.
"""

import asyncio
import re
import socket
from html import unescape

import httpx
import pytest
import uvicorn
from asgiref.sync import sync_to_async
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

from tests.calls.conftest import AUTH_TOKEN, _create_call
from tests.fakes.twilio_stream import FakeTwilioCaller
from voiceagents.models import Call, CallStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "https://voice.example.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def server():
    from patter_site.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    instance = uvicorn.Server(config)
    task = asyncio.ensure_future(instance.serve())
    while not instance.started:
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{port}"
    instance.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_inbound_call_end_to_end(server, fake_openai, recordings_dir):
    setup = await sync_to_async(_create_call)(fake_openai.url)
    await sync_to_async(Call.objects.filter(pk=setup.call.pk).delete)()  # the webhook creates it
    form = {
        "CallSid": "CA" + "e" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": "+14155550100",
        "To": "+14155550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    voice_url = f"{PUBLIC}/telephony/twilio/voice/"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(voice_url, form)
    async with httpx.AsyncClient(
        base_url=f"http://{server}", headers={"Host": "voice.example.test"}
    ) as http:
        response = await http.post(
            "/telephony/twilio/voice/", data=form, headers={"X-Twilio-Signature": signature}
        )
    assert response.status_code == 200, response.text
    twiml = response.text
    stream_url = unescape(re.search(r'<Stream url="([^"]+)"', twiml).group(1))
    assert stream_url == "wss://voice.example.test/telephony/twilio/media/"
    params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]+)"', twiml))

    ws_signature = RequestValidator(AUTH_TOKEN).compute_signature(stream_url, {})
    async with connect(
        f"ws://{server}/telephony/twilio/media/",
        additional_headers={"X-Twilio-Signature": ws_signature},
    ) as ws:

        async def receive(timeout):
            try:
                return await asyncio.wait_for(ws.recv(), timeout)
            except Exception:  # noqa: BLE001 - closed: the fake caller stops reading
                return None

        caller = FakeTwilioCaller(ws.send, receive, call_sid=form["CallSid"])
        await caller.connected()
        await caller.start(params)
        audio = bytes(range(1, 256)) * 8
        await caller.stream_audio(audio, realtime=True)
        await fake_openai.wait_for(lambda: len(fake_openai.session.audio_in) >= len(audio))
        assert bytes(fake_openai.session.audio_in) == audio
        await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600 and caller.marks_echoed)
        await caller.stop()
        await asyncio.wait_for(caller.closed.wait(), 5)
        await caller.aclose()

    call = await Call.objects.select_related("agent").aget(carrier_call_id=form["CallSid"])
    assert call.status == CallStatus.COMPLETED
    assert call.stream_id == caller.stream_sid
    assert call.recording
    assert await TranscriptEntry.objects.filter(call=call, role="agent").aexists()
    # Recorded, and plausible; how fast it is belongs in ``make bench`` (busy machines vary).
    assert 0 < call.metrics["greeting_latency_ms"] < 10_000
