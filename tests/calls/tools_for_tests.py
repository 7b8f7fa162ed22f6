"""Tools of our own, registered as an application would, for the calls that use them."""

from __future__ import annotations

import asyncio
import time

import voiceagents

#: Every context ``lookup_order`` was given, in order.
seen_contexts: list[voiceagents.ToolContext] = []


@voiceagents.tool
def lookup_order(order_id: str, call: voiceagents.ToolContext, include_items: bool = False) -> dict:
    """Find an order by its number and say where it is."""
    seen_contexts.append(call)
    return {"order": order_id, "status": "shipped", "items": ["kettle"] if include_items else []}


@voiceagents.tool(timeout=0.3)
async def slow_lookup(order_id: str) -> str:
    """Look an order up in the slow warehouse system."""
    await asyncio.sleep(5)
    return "never"


@voiceagents.tool(timeout=0.3)
def slow_sync_lookup(order_id: str) -> str:
    """Look an order up in the slow warehouse system, synchronously."""
    time.sleep(1)
    return "never"


@voiceagents.tool(name="broken_lookup", description="Look an order up; always fails.")
def broken(order_id: str) -> str:
    raise RuntimeError("warehouse database password expired")
