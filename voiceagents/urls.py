from django.urls import path

from . import views
from .monitor import views as monitor

app_name = "voiceagents"

urlpatterns = [
    path("healthz/", views.healthz, name="healthz"),
    # The admin's live monitor (staff only).
    path("monitor/", monitor.monitor_page, name="monitor"),
    path("monitor/state/", monitor.monitor_state_view, name="monitor_state"),
    path("monitor/calls/<uuid:call_id>/hang-up/", monitor.hang_up, name="monitor_hang_up"),
]
