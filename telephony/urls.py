"""HTTP routes of the carrier app (voice and status webhooks are added per carrier)."""

app_name = "telephony"

urlpatterns: list = []
