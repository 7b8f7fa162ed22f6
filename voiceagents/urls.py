from django.urls import path

from . import views

app_name = "voiceagents"

urlpatterns = [
    path("healthz/", views.healthz, name="healthz"),
]
