"""TwiML documents we answer Twilio with (docs/carriers/twilio.md#twiml-answer).

Built with ElementTree so every value is XML-escaped: parameter values and spoken text can hold
``&``, ``<`` or quotes. The documents: connect the call to our media stream, apologise and hang
up, refuse it busy, or (replacing a live call's TwiML) dial a transfer target.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from ..base import websocket_url
from ..lifecycle import APOLOGY

#: Path of the Twilio media-stream WebSocket under PUBLIC_URL (routed in ``telephony.routing``).
MEDIA_PATH = "/telephony/twilio/media/"

#: Said to callers whose call no agent can take (unknown or disabled number or agent).
DEFAULT_APOLOGY = APOLOGY

CONTENT_TYPE = "text/xml; charset=utf-8"


def media_stream_url(base_url: str | None = None) -> str:
    """``wss://<public host>/telephony/twilio/media/``, from ``PUBLIC_URL`` unless given."""
    return websocket_url(MEDIA_PATH, base_url)


def _document(root: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


def connect_stream(stream_url: str, parameters: Mapping[str, str]) -> str:
    """Connect the call to a bidirectional media stream, then hang up when the stream ends.

    Values travel as ``<Parameter>``s, never in the URL's query string, which Twilio refuses or
    strips (and which would leak into logs). ``<Hangup/>`` after ``</Connect>`` runs once our
    server closes the socket, so closing it is how the agent ends the call.
    """
    response = ET.Element("Response")
    connect = ET.SubElement(response, "Connect")
    stream = ET.SubElement(connect, "Stream", url=stream_url)
    for name, value in parameters.items():
        ET.SubElement(stream, "Parameter", name=name, value=str(value))
    ET.SubElement(response, "Hangup")
    return _document(response)


def apology(message: str = DEFAULT_APOLOGY, *, language: str | None = None) -> str:
    """Say ``message`` and hang up: the polite answer when no agent can take the call."""
    response = ET.Element("Response")
    say = ET.SubElement(response, "Say", {"language": language} if language else {})
    say.text = message
    ET.SubElement(response, "Hangup")
    return _document(response)


def reject_busy() -> str:
    """Refuse the call unanswered: the caller hears a busy tone, and Twilio bills nothing."""
    response = ET.Element("Response")
    ET.SubElement(response, "Reject", reason="busy")
    return _document(response)


#: Seconds the transfer target may ring before Twilio gives up (``<Dial timeout>``).
DIAL_TIMEOUT_S = 30


def dial(
    number: str, *, caller_id: str, announcement: str = "", language: str | None = None
) -> str:
    """Transfer: optionally say ``announcement``, then dial ``number`` with ``caller_id``.

    ``answerOnBridge`` keeps the caller hearing ringback (not silence) until the target answers.
    No ``action``: when the dialled leg ends, the document ends and Twilio hangs up.
    """
    response = ET.Element("Response")
    if announcement:
        say = ET.SubElement(response, "Say", {"language": language} if language else {})
        say.text = announcement
    attributes = {"answerOnBridge": "true", "timeout": str(DIAL_TIMEOUT_S)}
    if caller_id:
        attributes["callerId"] = caller_id
    target = ET.SubElement(ET.SubElement(response, "Dial", attributes), "Number")
    target.text = number
    return _document(response)
