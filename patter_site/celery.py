"""The example project's Celery app, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patter_site.settings")

app = Celery("patter_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
