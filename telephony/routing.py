"""WebSocket routes of the carrier app (media-stream consumers are added per carrier)."""

websocket_urlpatterns: list = []
