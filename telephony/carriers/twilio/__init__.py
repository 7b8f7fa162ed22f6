"""Twilio: voice webhooks and TwiML (``webhooks``, ``twiml``), request signatures (``signature``).

The media-stream consumer lives next to them (``media``). Modules here import the ORM, so import
them where they are used rather than from this package.
"""
