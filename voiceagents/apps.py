from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VoiceAgentsConfig(AppConfig):
    name = "voiceagents"
    verbose_name = _("Voice agents")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers checks, signal handlers and the "demo" reply handler (no imports beyond Django).
        from . import checks, configcache, demo, logsafety, signals  # noqa: F401

        # Edits of numbers, agents and credentials reach this process's next call at once.
        configcache.connect_signals()

        # Before any call runs: vendor libraries log handshake headers (API keys) at DEBUG.
        logsafety.install()

        from django.db.models.signals import pre_save

        from .models import Call
        from .numberhash import hash_caller_number

        pre_save.connect(hash_caller_number, sender=Call, dispatch_uid="voiceagents.hash_number")
