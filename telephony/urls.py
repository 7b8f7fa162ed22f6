"""HTTP routes of the carrier app, included at ``telephony/`` by the project.

Public URLs (configure them at the carrier): ``/telephony/twilio/voice/`` and
``/telephony/twilio/status/`` (``/telephony/twilio/amd/`` is given to Twilio by each outbound
call); ``/telephony/telnyx/webhook/`` (the Call Control Application's
webhook URL). The browser test call's pages (staff only) are under ``/telephony/browser/``.
"""

from django.urls import path

from .carriers.browser import views as browser
from .carriers.telnyx.webhooks import TelnyxWebhookView
from .carriers.twilio.webhooks import (
    TwilioAmdCallbackView,
    TwilioStatusCallbackView,
    TwilioVoiceWebhookView,
)

app_name = "telephony"

urlpatterns = [
    path("twilio/voice/", TwilioVoiceWebhookView.as_view(), name="twilio_voice"),
    path("twilio/status/", TwilioStatusCallbackView.as_view(), name="twilio_status"),
    path("twilio/amd/", TwilioAmdCallbackView.as_view(), name="twilio_amd"),
    path("telnyx/webhook/", TelnyxWebhookView.as_view(), name="telnyx_webhook"),
    path("browser/agents/<int:agent_id>/", browser.test_call_page, name="browser_call"),
    path("browser/agents/<int:agent_id>/start/", browser.start_test_call, name="browser_start"),
    path(
        "browser/calls/<uuid:call_id>/transcript/",
        browser.call_transcript,
        name="browser_transcript",
    ),
]
