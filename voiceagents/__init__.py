"""django-voiceagents: give AI voice agents phone numbers, from the Django admin."""

from .handlers import reply_handler
from .tools import ToolContext, tool

__all__ = ["ToolContext", "reply_handler", "tool"]
__version__ = "0.1.0.dev0"
