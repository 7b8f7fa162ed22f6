"""Telnyx: Call Control webhooks and REST commands, Ed25519 signatures, the media-stream consumer.

``signature`` verifies webhooks, ``events`` reads them, ``rest`` commands calls, ``codecs`` says
what the media stream carries, ``calls`` keeps ``Call`` rows in step (the Django world),
``webhooks`` is the view that ties them together and ``media`` is the WebSocket consumer
(the call world). Modules here import the ORM, so import them where they are used rather than
from this package.
"""
