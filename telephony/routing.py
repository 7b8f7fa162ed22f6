"""WebSocket routes of the carrier app: one media-stream consumer per carrier.

A carrier's stream is served at ``telephony/<carrier id>/media/`` (route name
``<carrier id>_media``); ``media_route`` builds that route for a ``MediaStreamConsumer``
subclass, so a new carrier is one line here (or one ``media_route`` in a project's own router).
"""

from django.urls import path

from .carriers.telnyx.media import TelnyxMediaConsumer
from .carriers.twilio.media import TwilioMediaConsumer


def media_route(consumer_class):
    """The URL route of ``consumer_class``'s media stream."""
    carrier = consumer_class.carrier_id
    return path(f"telephony/{carrier}/media/", consumer_class.as_asgi(), name=f"{carrier}_media")


websocket_urlpatterns = [media_route(TwilioMediaConsumer), media_route(TelnyxMediaConsumer)]
