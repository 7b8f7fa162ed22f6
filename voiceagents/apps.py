from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VoiceAgentsConfig(AppConfig):
    name = "voiceagents"
    verbose_name = _("Voice agents")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks, signals  # noqa: F401  (registers checks and signal handlers)
