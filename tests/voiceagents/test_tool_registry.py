"""Tools of your own: registration, schemas derived from signatures, agents that use them."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

import tests.calls.tools_for_tests  # noqa: F401 - registers the tools
import voiceagents
from tests.voiceagents.factories import make_agent
from voiceagents.call.tools import argument_problem
from voiceagents.exceptions import UnknownTool
from voiceagents.forms.agents import AgentForm
from voiceagents.tools import END_CALL, agent_tools, get_tool, registered_tool_names


def test_a_schema_is_derived_from_the_signature_and_the_docstring_describes_it():
    spec = get_tool("lookup_order").spec
    assert spec.description == "Find an order by its number and say where it is."
    assert spec.parameters == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "include_items": {"type": "boolean"}},
        "required": ["order_id"],
    }  # ``call`` is the tool's context, not the model's to fill
    assert get_tool("lookup_order").wants_call
    assert get_tool("broken_lookup").spec.description == "Look an order up; always fails."


def test_tools_named_by_dotted_path_in_settings(voiceagents_settings):
    voiceagents_settings["TOOLS"] = {"fetch_weather": "tests.calls.tools_for_tests.broken"}
    assert "fetch_weather" in registered_tool_names()
    assert get_tool("fetch_weather").spec.parameters["required"] == ["order_id"]


def test_unknown_names_and_bad_registrations_are_refused():
    with pytest.raises(UnknownTool, match="Registered tools: .*lookup_order"):
        get_tool("no_such_tool")
    with pytest.raises(ValueError, match="description"):

        @voiceagents.tool
        def undocumented(x: str):
            pass

    with pytest.raises(ValueError, match="built-in"):

        @voiceagents.tool(name="end_call", description="Mine.")
        def my_end_call():
            pass

    with pytest.raises(ValueError, match="already registered"):

        @voiceagents.tool(name="lookup_order", description="Another.")
        def another():
            pass


def test_the_agents_tools_follow_the_built_in_ones():
    specs = agent_tools([], ["lookup_order"])
    assert [s.name for s in specs] == [END_CALL.name, "lookup_order"]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"order_id": "A1"}, ""),
        ({}, "missing order_id"),
        ({"order_id": 5}, "order_id must be string"),
        ({"order_id": "A1", "include_items": "yes"}, "include_items must be boolean"),
        ({"order_id": "A1", "shoe_size": 9}, "unknown shoe_size"),
    ],
)
def test_arguments_are_checked_against_the_schema(arguments, problem):
    assert argument_problem(get_tool("lookup_order").spec.parameters, arguments) == problem


@pytest.mark.django_db
def test_an_agent_with_an_unknown_tool_does_not_validate():
    agent = make_agent(tools=["lookup_order"])
    agent.full_clean()
    agent.tools = ["lookup_order", "gone_tool"]
    with pytest.raises(ValidationError) as err:
        agent.full_clean()
    assert "No tool named 'gone_tool'" in str(err.value.message_dict["tools"])


@pytest.mark.django_db
def test_the_agent_form_offers_registered_tools_as_checkboxes():
    agent = make_agent(tools=["lookup_order"])
    form = AgentForm(instance=agent)
    choices = [value for value, _ in form.fields["tools"].choices]
    assert {"lookup_order", "slow_lookup", "broken_lookup"} <= set(choices)
    html = str(form["tools"])
    assert re.search(r'type="checkbox" name="tools" value="lookup_order"[^>]*checked', html)
    assert not re.search(r'value="slow_lookup"[^>]*checked', html)
