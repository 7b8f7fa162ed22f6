"""An agent saved with the seed's names that OpenAI Realtime no longer takes still gets a working call.

The fake refuses what the service refuses: the retired model at connect (``model_not_found``)
and a TTS-only voice in ``session.update`` (``invalid_value``). The agent keeps the seed's names;
the call sends their current equivalents.
"""

import pytest
from websockets.asyncio.client import connect

from tests.calls.harness import ended_call
from voiceagents.models import CallStatus

pytestmark = pytest.mark.django_db(transaction=True)


async def test_seed_model_and_voice_give_a_working_call(create_call, connect_caller, fake_openai):
    setup = await create_call(model="gpt-4o-mini-realtime-preview", voice="nova")
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    # The greeting's audio reaches the caller: the session was accepted with the current names.
    await fake_openai.wait_for(lambda: len(caller.media_in) >= 1600)
    assert "model=gpt-realtime-mini" in fake_openai.session.path
    assert fake_openai.session.config["audio"]["output"]["voice"] == "marin"
    assert not fake_openai.events_of("error")
    await caller.stop()
    call = await ended_call(setup.call.pk)
    assert (call.status, call.end_reason) == (CallStatus.COMPLETED, "caller_hangup")
    assert (setup.agent.model, setup.agent.voice) == ("gpt-4o-mini-realtime-preview", "nova")


async def test_the_fake_refuses_the_retired_model_as_the_service_does(fake_openai):
    # The control: sent as is, the seed's model never gets a session.
    url = f"{fake_openai.url}?model=gpt-4o-mini-realtime-preview"
    headers = {"Authorization": f"Bearer {fake_openai.api_key}"}
    async with connect(url, additional_headers=headers) as socket:
        error = await socket.recv()
        await socket.wait_closed()
    assert '"model_not_found"' in error
    assert socket.close_code == 4000
