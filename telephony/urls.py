"""HTTP routes of the carrier app, included at ``telephony/`` by the project.

Public URLs (configure them at the carrier): ``/telephony/twilio/voice/`` and
``/telephony/twilio/status/``.
"""

from django.urls import path

from .carriers.twilio.webhooks import TwilioStatusCallbackView, TwilioVoiceWebhookView

app_name = "telephony"

urlpatterns = [
    path("twilio/voice/", TwilioVoiceWebhookView.as_view(), name="twilio_voice"),
    path("twilio/status/", TwilioStatusCallbackView.as_view(), name="twilio_status"),
]
