"""django-voiceagents: give AI voice agents phone numbers, from the Django admin."""

from .handlers import reply_handler

__all__ = ["reply_handler"]
__version__ = "0.1.0.dev0"
