"""The tools every agent may be offered, described once for every provider.

A tool is a name, a one-line description the model reads, and a JSON-schema object for its
parameters. Providers translate these into their own shape (OpenAI function tools, ElevenLabs
client tools); the call session runs them when the model calls one (``voiceagents.call.tools``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    #: A JSON-schema object (``{"type": "object", "properties": {...}, "required": [...]}``).
    parameters: dict[str, Any] = field(default_factory=dict)


END_CALL = ToolSpec(
    name="end_call",
    description=(
        "Hang up the phone call. Use it once the conversation is over and you have said goodbye."
    ),
    parameters={
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the call ends, in a few words."}
        },
        "required": [],
    },
)

TRANSFER_CALL = ToolSpec(
    name="transfer_call",
    description=(
        "Transfer the caller to another phone number. Only numbers you were given for transfers "
        "are accepted."
    ),
    parameters={
        "type": "object",
        "properties": {
            "number": {
                "type": "string",
                "description": "The phone number in E.164 format, e.g. +14155550100.",
            }
        },
        "required": ["number"],
    },
)


def builtin_tools(transfer_allowlist: Sequence[str]) -> tuple[ToolSpec, ...]:
    """The built-in tools an agent is offered: ``end_call`` always, ``transfer_call`` only when
    its allowlist names at least one number (an empty allowlist means no transfers)."""
    return (END_CALL, TRANSFER_CALL) if transfer_allowlist else (END_CALL,)


# -- tools of your own -----------------------------------------------------------------------------
#
# A Python function becomes a tool an agent can be given with ``@voiceagents.tool`` (or by dotted
# path in ``VOICEAGENTS["TOOLS"] = {"name": "myapp.tools.lookup_order"}``). Its parameters are
# described by a JSON schema: given, or derived from the function's annotated parameters (str,
# int, float, bool; those without a default are required). A parameter named ``call`` is not
# offered to the model: it receives the call's ``ToolContext``. Running them belongs to the call
# (``voiceagents.call.tools``).

#: Seconds a tool may run before the model is told it failed (``TOOL_TIMEOUT`` overrides).
DEFAULT_TIMEOUT = 10.0

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call it runs in."""

    call_id: str
    agent: str
    caller_number: str
    called_number: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredTool:
    spec: ToolSpec
    func: Any
    #: Seconds it may run; ``None``: ``TOOL_TIMEOUT``.
    timeout: float | None = None
    wants_call: bool = False


#: Filled at import time by the decorator; never mutated while calls run.
_decorated: dict[str, RegisteredTool] = {}


def _schema_from_signature(func) -> dict[str, Any]:
    import inspect
    import typing

    hints = typing.get_type_hints(func)
    properties: dict[str, Any] = {}
    required = []
    for name, parameter in inspect.signature(func).parameters.items():
        if name == "call" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        kind = _JSON_TYPES.get(hints.get(name))
        properties[name] = {"type": kind} if kind else {}
        if parameter.default is parameter.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _describe(func, name: str, description: str | None, parameters, timeout) -> RegisteredTool:
    import inspect

    doc = description or (inspect.getdoc(func) or "").split("\n\n")[0].replace("\n", " ")
    if not doc:
        raise ValueError(
            f"The tool {name!r} needs a description (or a docstring): the model reads it"
        )
    if name in {END_CALL.name, TRANSFER_CALL.name}:
        raise ValueError(f"{name!r} is a built-in tool's name")
    schema = parameters if parameters is not None else _schema_from_signature(func)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError(
            f"The tool {name!r} needs a JSON schema of type 'object' for its parameters"
        )
    wants_call = "call" in inspect.signature(func).parameters
    return RegisteredTool(ToolSpec(name, doc, schema), func, timeout, wants_call)


def tool(
    func=None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
):
    """Register a function as a tool agents can be given: ``@voiceagents.tool`` or
    ``@voiceagents.tool(name=..., description=..., parameters=..., timeout=...)``."""

    def register(f):
        registered = _describe(f, name or f.__name__, description, parameters, timeout)
        existing = _decorated.get(registered.spec.name)
        if existing is not None and existing.func is not f:
            raise ValueError(
                f"A tool named {registered.spec.name!r} is already registered by "
                f"{existing.func.__module__}.{existing.func.__qualname__}"
            )
        _decorated[registered.spec.name] = registered
        f.voiceagents_tool = registered
        return f

    return register(func) if func is not None else register


def configured_tool_paths() -> dict[str, str]:
    from .conf import get_setting
    from .exceptions import ConfigurationError

    paths = get_setting("TOOLS") or {}
    if not isinstance(paths, dict):
        raise ConfigurationError("VOICEAGENTS['TOOLS'] must map tool names to dotted paths")
    return paths


def registered_tool_names() -> list[str]:
    """Every tool name an agent may be given, sorted."""
    return sorted(set(_decorated) | set(configured_tool_paths()))


def get_tool(name: str) -> RegisteredTool:
    """The tool called ``name``; an unknown name raises ``UnknownTool`` listing the known ones."""
    from django.utils.module_loading import import_string

    from .exceptions import ConfigurationError, UnknownTool

    if name in _decorated:
        return _decorated[name]
    paths = configured_tool_paths()
    if name in paths:
        try:
            func = import_string(paths[name])
        except ImportError as err:
            raise ConfigurationError(
                f"VOICEAGENTS['TOOLS'][{name!r}] = {paths[name]!r} cannot be imported: {err}"
            ) from err
        registered = getattr(func, "voiceagents_tool", None)
        if registered is not None:  # decorated too: its description, under this name
            return replace(registered, spec=replace(registered.spec, name=name))
        return _describe(func, name, None, None, None)
    known = ", ".join(registered_tool_names()) or "none"
    raise UnknownTool(
        f"No tool named {name!r}. Registered tools: {known}. Register one with "
        "@voiceagents.tool or VOICEAGENTS['TOOLS']."
    )


def agent_tools(transfer_allowlist: Sequence[str], names: Sequence[str]) -> tuple[ToolSpec, ...]:
    """Every tool an agent is offered: the built-in ones, then its registered tools by name."""
    return builtin_tools(transfer_allowlist) + tuple(get_tool(name).spec for name in names)
