"""``patter_site.asgi`` with the benchmark's hot-path changes undone, for before/after runs.

The bench runs it as the server ``uvicorn-before`` (or ``daphne-before``) next to the real one,
interleaved, so that both see the same machine: this VM's speed drifts by ±20 % over minutes.
``BENCH_UNDO`` (comma-separated, default all) picks what is undone:

``consumer``
    the media consumer's own receive loop, back to Channels' ``await_many_dispatch``;
``recorder``
    the recorder's direct G.711 decode, back to the generic converter.
"""

import os

from channels.consumer import AsyncConsumer

from patter_site.asgi import application
from telephony.media import MediaStreamConsumer
from voiceagents.audio import recorder

UNDO = set(os.environ.get("BENCH_UNDO", "consumer,recorder").split(","))

if "consumer" in UNDO:
    MediaStreamConsumer.__call__ = AsyncConsumer.__call__
if "recorder" in UNDO:
    recorder._g711_table = lambda fmt, sample_rate: None
__all__ = ["application"]
