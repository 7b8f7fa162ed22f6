from django.urls import path, re_path

from . import recording_links, views
from .monitor import views as monitor

app_name = "voiceagents"

urlpatterns = [
    # /healthz/ is the readiness check, as it always was; live and ready with or without a slash,
    # as load balancers are configured by hand and rarely follow redirects.
    path("healthz/", views.healthz, name="healthz"),
    re_path(r"^healthz/live/?$", views.live, name="healthz_live"),
    re_path(r"^healthz/ready/?$", views.ready, name="healthz_ready"),
    # The admin's live monitor (staff only).
    path("monitor/", monitor.monitor_page, name="monitor"),
    path("monitor/state/", monitor.monitor_state_view, name="monitor_state"),
    path("monitor/calls/<uuid:call_id>/hang-up/", monitor.hang_up, name="monitor_hang_up"),
    # Signed, expiring links to a recording, sent in the customer webhook (recording_links).
    path("recordings/<str:token>/", recording_links.recording_link, name="recording_link"),
]
