"""A caller ID is the caller's to choose: it reaches the model sanitised and quoted, never as
placeholders or markup (docs/privacy.md#caller-controlled-values)."""

import pytest

from voiceagents.models import Call

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_CALLER_ID = "+1415{company}<b>x"


async def test_a_hostile_caller_id_reaches_the_provider_harmless(
    create_call, connect_caller, fake_openai
):
    setup = await create_call(
        system_prompt="You work for {company}. The caller's number is {caller_number}.",
        first_message="Hello {caller_number}, this is {company}.",
    )
    await Call.objects.filter(pk=setup.call.pk).aupdate(from_number=HOSTILE_CALLER_ID)
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.events_of("response.create"))

    update = fake_openai.events_of("session.update")[0]["session"]
    assert update["instructions"] == 'You work for Acme. The caller\'s number is "+1415".'
    first = fake_openai.events_of("response.create")[0]["response"]["instructions"]
    assert 'Hello "+1415", this is Acme.' in first
    for sent in (update["instructions"], first):
        assert "<b>" not in sent and "{company}" not in sent and "x" not in sent.split("+1415")[1]
    await caller.stop()
    await caller.wait_closed()
