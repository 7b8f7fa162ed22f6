"""TwiML answer documents: shape, escaping and the media-stream URL."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from telephony.carriers.twilio import twiml


def test_connect_stream_document_shape():
    document = twiml.connect_stream("wss://h.example/p/", {"call_id": "42", "stream_token": "t"})
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document)
    assert [child.tag for child in root] == ["Connect", "Hangup"]
    (stream,) = root.find("Connect")
    assert stream.tag == "Stream" and stream.get("url") == "wss://h.example/p/"
    assert [(p.get("name"), p.get("value")) for p in stream] == [
        ("call_id", "42"),
        ("stream_token", "t"),
    ]


def test_values_are_escaped():
    tricky = "a&b<c>\"d'\ne"
    root = ET.fromstring(twiml.connect_stream("wss://h/?x=1&y=2", {"k": tricky}))
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://h/?x=1&y=2"
    assert stream.find("Parameter").get("value") == tricky
    assert ET.fromstring(twiml.apology("Tom & Jerry <3")).find("Say").text == "Tom & Jerry <3"


def test_apology_says_something_and_hangs_up():
    root = ET.fromstring(twiml.apology())
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == twiml.DEFAULT_APOLOGY
    assert (
        ET.fromstring(twiml.apology("Hola", language="es-ES")).find("Say").get("language")
        == "es-ES"
    )


def test_media_stream_url_follows_the_public_url(voiceagents_settings):
    assert twiml.media_stream_url() == "wss://voice.example.test/telephony/twilio/media/"
    voiceagents_settings["PUBLIC_URL"] = "http://localhost:8000/"
    assert twiml.media_stream_url() == "ws://localhost:8000/telephony/twilio/media/"


def test_dial_transfers_to_the_number_with_our_caller_id():
    root = ET.fromstring(twiml.dial("+14155550123", caller_id="+14155550199"))
    assert [child.tag for child in root] == ["Dial"]
    dial = root.find("Dial")
    assert dial.get("callerId") == "+14155550199"
    assert dial.get("answerOnBridge") == "true"
    assert dial.get("timeout") == str(twiml.DIAL_TIMEOUT_S)
    assert [(n.tag, n.text) for n in dial] == [("Number", "+14155550123")]


def test_dial_says_an_announcement_first_escaped():
    root = ET.fromstring(twiml.dial("+14155550123", caller_id="", announcement="Tom & <Jerry>"))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root.find("Say").text == "Tom & <Jerry>"
    assert root.find("Dial").get("callerId") is None
