"""WebSocket routes of the carrier app: one media-stream consumer per carrier."""

from django.urls import path

from .carriers.telnyx.media import TelnyxMediaConsumer
from .carriers.twilio.media import TwilioMediaConsumer

websocket_urlpatterns = [
    path("telephony/twilio/media/", TwilioMediaConsumer.as_asgi(), name="twilio_media"),
    path("telephony/telnyx/media/", TelnyxMediaConsumer.as_asgi(), name="telnyx_media"),
]
