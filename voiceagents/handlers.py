"""The reply-handler registry.

A reply handler answers the caller in pipeline mode: it takes a small context (the caller's text
and the call's details) and returns, or streams, the reply to speak. Handlers are registered by
name, either with the ``@voiceagents.reply_handler("name")`` decorator or by dotted path in
``VOICEAGENTS["REPLY_HANDLERS"] = {"name": "myapp.replies.handle"}``; agents refer to them by name.
Running handlers belongs to the pipeline; this module only names and resolves them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from .conf import get_setting
from .exceptions import ConfigurationError, UnknownReplyHandler

ReplyHandler = Callable[..., Any]

#: Filled at import time by the decorator; never mutated while calls run.
_decorated: dict[str, ReplyHandler] = {}


def reply_handler(name: str) -> Callable[[ReplyHandler], ReplyHandler]:
    """Register the decorated callable as the reply handler called ``name``."""
    if not name or not isinstance(name, str):
        raise ValueError("reply_handler() needs a non-empty name")

    def register(func: ReplyHandler) -> ReplyHandler:
        existing = _decorated.get(name)
        if existing is not None and existing is not func:
            raise ValueError(
                f"Reply handler {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _decorated[name] = func
        return func

    return register


def configured_handler_paths() -> dict[str, str]:
    paths = get_setting("REPLY_HANDLERS") or {}
    if not isinstance(paths, dict):
        raise ConfigurationError(
            "VOICEAGENTS['REPLY_HANDLERS'] must map handler names to dotted paths"
        )
    return paths


def registered_names() -> list[str]:
    """Every handler name an agent may use, sorted."""
    return sorted(set(_decorated) | set(configured_handler_paths()))


def get_reply_handler(name: str) -> ReplyHandler:
    """Resolve a handler by name; an unknown name raises an error listing the registered ones."""
    if name in _decorated:
        return _decorated[name]
    paths = configured_handler_paths()
    if name in paths:
        try:
            return import_string(paths[name])
        except ImportError as err:
            raise ConfigurationError(
                f"VOICEAGENTS['REPLY_HANDLERS'][{name!r}] = {paths[name]!r} cannot be imported: "
                f"{err}"
            ) from err
    known = ", ".join(registered_names()) or "none"
    raise UnknownReplyHandler(
        f"No reply handler named {name!r}. Registered handlers: {known}. Register one with "
        "@voiceagents.reply_handler(name) or VOICEAGENTS['REPLY_HANDLERS']."
    )
