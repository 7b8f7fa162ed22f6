"""Admin for agents, credentials, phone numbers and calls: one module per model family."""

from . import agents, calls, credentials, numbers  # noqa: F401  (each registers its admins)
