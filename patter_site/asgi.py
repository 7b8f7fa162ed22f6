"""ASGI entry point: HTTP goes to Django (carrier webhooks straight to their views), WebSockets to
the carrier app's media-stream routes."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patter_site.settings")

# Build the Django app first: it sets Django up before the routing (and its models) is imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from telephony.asgi import CarrierWebhookRouter  # noqa: E402
from telephony.routing import websocket_urlpatterns  # noqa: E402
from voiceagents.runtime import freeze_startup_objects  # noqa: E402

# No origin validator: carriers are not browsers and send no Origin header.
application = ProtocolTypeRouter(
    {
        # Carrier webhooks go straight to their views, skipping the middlewares (telephony/asgi.py).
        "http": CarrierWebhookRouter(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Keep Django's own objects out of full garbage collections, which would stall every call.
freeze_startup_objects()
