"""Tools of our own in OpenAI Realtime calls: offered in the session, run when the model calls them,
and every outcome (a result, a failure, a timeout, bad arguments) answered to the model."""

from __future__ import annotations

import json

import pytest

from tests.calls import tools_for_tests
from voiceagents.models import CallEvent

pytestmark = pytest.mark.django_db(transaction=True)


async def live_call(create_call, connect_caller, fake_openai, tools):
    setup = await create_call(tools=tools)
    connected, caller = await connect_caller()
    assert connected
    await caller.connected()
    await caller.start(setup.parameters, call_sid=setup.call.carrier_call_id)
    await fake_openai.wait_for(lambda: fake_openai.events_of("session.update"))
    return setup, caller


async def model_calls(fake_openai, name: str, arguments: dict | str, call_id: str) -> dict:
    """The model calls ``name``; returns the function_call_output the fake then receives."""
    await fake_openai.send(
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_tool",
            "item_id": f"item_{call_id}",
            "output_index": 0,
            "call_id": call_id,
            "name": name,
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        }
    )

    def answered():
        return [
            e["item"]
            for e in fake_openai.events_of("conversation.item.create")
            if e["item"].get("type") == "function_call_output" and e["item"]["call_id"] == call_id
        ]

    (output,) = await fake_openai.wait_for(answered, timeout=10)
    return output


async def test_a_registered_tool_is_offered_run_and_answered(
    create_call, connect_caller, fake_openai
):
    tools_for_tests.seen_contexts.clear()
    setup, caller = await live_call(
        create_call, connect_caller, fake_openai, ["lookup_order", "broken_lookup"]
    )
    offered = fake_openai.events_of("session.update")[0]["session"]["tools"]
    assert [t["name"] for t in offered] == ["end_call", "lookup_order", "broken_lookup"]
    assert offered[1]["type"] == "function"
    assert offered[1]["parameters"]["required"] == ["order_id"]

    output = await model_calls(
        fake_openai, "lookup_order", {"order_id": "A-17", "include_items": True}, "call_1"
    )
    assert json.loads(output["output"]) == {
        "order": "A-17",
        "status": "shipped",
        "items": ["kettle"],
    }
    # The model is asked to go on with the result.
    await fake_openai.wait_for(lambda: len(fake_openai.events_of("response.create")) >= 2)
    (context,) = tools_for_tests.seen_contexts
    assert context.call_id == str(setup.call.pk)
    assert (context.caller_number, context.called_number) == ("+14155550100", "+14155550199")
    assert context.agent == "front-desk" and context.variables["company"] == "Acme"

    failed = await model_calls(fake_openai, "broken_lookup", {"order_id": "A-17"}, "call_2")
    assert "RuntimeError" in failed["output"]
    assert "password" not in failed["output"]  # the exception's text stays in our log
    await caller.stop()
    await caller.wait_closed()
    events = [
        e.data async for e in CallEvent.objects.filter(call_id=setup.call.pk, kind="tool_call")
    ]
    assert [(e["name"], e.get("error")) for e in events] == [
        ("lookup_order", None),
        ("broken_lookup", "failed"),
    ]


@pytest.mark.parametrize("tool", ["slow_lookup", "slow_sync_lookup"])
async def test_a_tool_that_takes_too_long_is_answered_with_an_error(
    create_call, connect_caller, fake_openai, tool
):
    setup, caller = await live_call(create_call, connect_caller, fake_openai, [tool])
    output = await model_calls(fake_openai, tool, {"order_id": "A-17"}, "call_slow")
    assert (
        output["output"].startswith('{"error"') or "did not answer within 0.3 s" in output["output"]
    )
    await caller.stop()
    await caller.wait_closed()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"order": "A-17"}, "missing order_id"),
        ('{"order_id": ', "JSON object"),
        ({"order_id": "A-17"}, "no tool named"),
    ],
)
async def test_bad_calls_are_answered_not_run(
    create_call, connect_caller, fake_openai, arguments, expected
):
    tools_for_tests.seen_contexts.clear()
    tools = [] if expected == "no tool named" else ["lookup_order"]
    setup, caller = await live_call(create_call, connect_caller, fake_openai, tools)
    output = await model_calls(fake_openai, "lookup_order", arguments, "call_bad")
    assert expected.lower() in output["output"].lower()
    assert tools_for_tests.seen_contexts == []
    await caller.stop()
    await caller.wait_closed()
