from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = _("Telephony")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import carriers, checks  # noqa: F401  (fills the carrier registry; registers checks)
