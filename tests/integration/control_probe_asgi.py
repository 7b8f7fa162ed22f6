"""ASGI app served by a separate daphne process in ``test_channels_redis_across_processes``.

Its consumer does what a media-stream consumer does on the control plane: it joins
``voiceagents.call.control.call_group(call_id)`` on connect and acts on ``call.hangup`` (here: it tells
its WebSocket client, with its process id, and closes).

Run: ``DJANGO_SETTINGS_MODULE=tests.settings REDIS_URL=... python -m daphne -b 127.0.0.1 -p 0
tests.integration.control_probe_asgi:application``
"""

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from voiceagents.call.control import call_group  # noqa: E402


class ControlProbeConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = call_group(self.scope["url_route"]["kwargs"]["call_id"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Sent only once group_add has returned: the client may send commands from here on.
        await self._tell({"type": "joined", "group": self.group})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def call_hangup(self, event):
        await self._tell(event)
        await self.close()

    async def _tell(self, message):
        await self.send(text_data=json.dumps({**message, "pid": os.getpid()}))


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [path("control-probe/<uuid:call_id>/", ControlProbeConsumer.as_asgi())]
        )
    }
)
