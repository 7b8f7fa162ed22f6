"""WebSocket routes of the carrier app: one media-stream consumer per carrier.

A carrier's stream is served at ``telephony/<carrier id>/media/`` (route name
``<carrier id>_media``); ``media_route`` builds that route for a ``MediaStreamConsumer``
subclass, so a new carrier is one line here (or one ``media_route`` in a project's own router).
The admin's live monitor (``voiceagents.monitor``) is served here too, behind the same session
and ``Origin`` check as the browser test call.
"""

from django.urls import path

from voiceagents.monitor.consumer import SOCKET_PATH as MONITOR_PATH
from voiceagents.monitor.consumer import LiveMonitorConsumer

from .carriers.browser.media import BrowserMediaConsumer, session_stack
from .carriers.telnyx.media import TelnyxMediaConsumer
from .carriers.twilio.media import TwilioMediaConsumer


def media_route(consumer_class, wrap=None):
    """The URL route of ``consumer_class``'s media stream (``wrap``: ASGI middleware around it)."""
    carrier = consumer_class.carrier_id
    app = consumer_class.as_asgi()
    if wrap is not None:
        app = wrap(app)
    return path(f"telephony/{carrier}/media/", app, name=f"{carrier}_media")


websocket_urlpatterns = [
    media_route(TwilioMediaConsumer),
    media_route(TelnyxMediaConsumer),
    # The staff's browser: its session cookie says who calls (only this route reads it).
    media_route(BrowserMediaConsumer, wrap=session_stack),
    # The admin's live monitor: staff's browsers too, behind the same session and Origin check.
    path(
        MONITOR_PATH.lstrip("/"),
        session_stack(LiveMonitorConsumer.as_asgi()),
        name="voiceagents_monitor",
    ),
]
