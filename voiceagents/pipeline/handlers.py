"""Registered Python reply handlers as a reply stage (docs/stages/reply_handlers.md).

A handler (``@voiceagents.reply_handler("name")`` or ``VOICEAGENTS["REPLY_HANDLERS"]``) is
called with the event dict and may be written in whichever shape suits it: a plain or ``async``
function returning a string, ``None`` (say nothing) or an iterable of strings, or a generator or
async generator yielding strings. ``HandlerReply`` turns all of them into the stream of text
pieces the pipeline speaks.

Synchronous code never runs on the call's event loop: a blocking handler (a database query, a
slow HTTP request) would freeze the audio of every call served by the process. Plain functions
and sync generators run in a worker thread with Django's database connections handled
(``database_sync_to_async``, not thread-sensitive so calls do not queue behind one another).

Timeouts and apologies for slow or failing handlers belong to the pipeline, not here: exceptions
raised by the handler propagate unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from channels.db import database_sync_to_async

from ..handlers import get_reply_handler
from .base import ReplyGenerator

#: Returned by ``next()`` in the worker thread when the generator is exhausted (StopIteration
#: cannot cross into a coroutine).
_EXHAUSTED = object()


def _in_thread(func):
    return database_sync_to_async(func, thread_sensitive=False)


def _next(iterator: Iterator[Any]) -> Any:
    return next(iterator, _EXHAUSTED)


class HandlerReply(ReplyGenerator):
    #: Handlers have no stage spec (``StageConfig.id`` is '').
    id = ""
    name = "reply handler"

    def __init__(self, config, context):
        super().__init__(config, context)
        self.handler_name = config.handler
        # Resolved now so that an unknown or unimportable name fails when the call is set up.
        self.handler = get_reply_handler(config.handler)

    def reply(self, event: Mapping[str, Any]) -> AsyncIterator[str]:
        return self._pieces(event)

    async def _pieces(self, event: Mapping[str, Any]) -> AsyncIterator[str]:
        handler = self.handler
        if _is_async(handler):
            result = handler(event)
        else:
            result = await _in_thread(handler)(event)
        if inspect.isawaitable(result):
            # An async function, or a sync wrapper that hands back a coroutine.
            result = await result
        if result is None:
            return
        if isinstance(result, str):
            if result:
                yield result
            return
        if isinstance(result, AsyncIterable):
            pieces = aiter(result)
            try:
                async for piece in pieces:
                    if self._checked(piece):
                        yield piece
            finally:
                # Stopped early (a barge-in): close it now so its ``finally`` blocks run at
                # once, not whenever it is garbage collected.
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    await aclose()
            return
        if isinstance(result, list | tuple):
            for piece in result:
                if self._checked(piece):
                    yield piece
            return
        if _is_iterable(result):
            # A generator (or any lazy iterable) may block between pieces: step it in the thread.
            iterator = iter(result)
            try:
                while (piece := await _in_thread(_next)(iterator)) is not _EXHAUSTED:
                    if self._checked(piece):
                        yield piece
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    await _in_thread(close)()
            return
        raise TypeError(
            f"Reply handler {self.handler_name!r} returned {type(result).__name__}; a reply "
            "handler must return a str, None or an iterable of str, or yield str pieces"
        )

    def _checked(self, piece: Any) -> bool:
        """Whether to yield ``piece``: empty strings are skipped, anything but a str refused."""
        if isinstance(piece, str):
            return bool(piece)
        raise TypeError(
            f"Reply handler {self.handler_name!r} produced a {type(piece).__name__} piece; "
            "reply pieces must be str"
        )


def _is_async(func: Any) -> bool:
    """Coroutine and async generator functions, including callable objects with an async
    ``__call__`` (those run on the event loop; everything else goes to a thread)."""
    if iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        return True
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return call is not None and (iscoroutinefunction(call) or inspect.isasyncgenfunction(call))


def _is_iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return not isinstance(value, bytes | bytearray | Mapping)
