"""The exception family of django-voiceagents.

Modelled on django-anymail's: one base class that carries context (vendor, call id, status code,
response), concrete errors that also inherit the matching builtin so that generic handlers still
catch them, and configuration errors deliberately *outside* the base class so that code which
tolerates vendor failures never swallows a configuration mistake.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation

#: Response bodies are summarised to this many characters in error messages.
RESPONSE_SUMMARY_CHARS = 300


class VoiceAgentsError(Exception):
    """Base class for every runtime error raised by django-voiceagents and telephony."""

    def __init__(self, *args, vendor=None, call_id=None, status_code=None, response=None, **kwargs):
        super().__init__(*args)
        self.vendor = vendor
        self.call_id = call_id
        self.status_code = status_code
        self.response = response
        self.context = kwargs

    def __str__(self):
        parts = [super().__str__() or self.__class__.__name__]
        details = []
        if self.vendor:
            details.append(f"vendor={self.vendor}")
        if self.call_id:
            details.append(f"call={self.call_id}")
        if self.status_code is not None:
            details.append(f"status={self.status_code}")
        if details:
            parts.append(f"({', '.join(details)})")
        summary = self._response_summary()
        if summary:
            parts.append(f"\nvendor response: {summary}")
        cause = self.__cause__
        if cause is not None:
            parts.append(f"\ncaused by {cause.__class__.__name__}: {cause}")
        return " ".join(parts[:2]) + "".join(parts[2:])

    def _response_summary(self) -> str:
        response = self.response
        if response is None:
            return ""
        text = getattr(response, "text", response)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = str(text)
        if len(text) > RESPONSE_SUMMARY_CHARS:
            text = text[:RESPONSE_SUMMARY_CHARS] + "…"
        return text


class UnsupportedFeature(VoiceAgentsError, ValueError):
    """A request that cannot be expressed to the vendor at all."""


class WebhookValidationFailure(VoiceAgentsError, SuspiciousOperation):
    """A webhook or media stream failed authentication (signature, token, timestamp).

    Inherits SuspiciousOperation so Django answers 400 and logs to ``django.security``;
    carrier views that must answer 403 catch it explicitly.
    """


class ProviderConnectionError(VoiceAgentsError, ConnectionError):
    """The provider could not be reached, or its socket dropped."""


class ProviderProtocolError(VoiceAgentsError, ValueError):
    """The provider sent something that does not fit its protocol."""


class ProviderAPIError(VoiceAgentsError):
    """The provider answered with an error (an HTTP error status or an error frame)."""


class ProvisioningError(ProviderAPIError):
    """The vendor side of an agent could not be set up (e.g. an ElevenLabs agent refused)."""


class CarrierAPIError(VoiceAgentsError):
    """A carrier REST call failed; carries the vendor's message."""


class UnknownReplyHandler(VoiceAgentsError, LookupError):
    """A reply handler name that is not registered."""


class UnknownTool(VoiceAgentsError, LookupError):
    """A tool name that is not registered."""


class CredentialDecryptionError(VoiceAgentsError):
    """A stored secret cannot be decrypted with any configured key."""


class ConfigurationError(ImproperlyConfigured):
    """A setting is missing or invalid. Not a VoiceAgentsError on purpose (see module docstring)."""


class ImproperlyInstalled(ConfigurationError, ImportError):
    """An optional package is missing; the message names the extra that installs it."""

    def __init__(self, missing_package: str, extra: str):
        self.missing_package = missing_package
        self.extra = extra
        super().__init__(
            f"{missing_package} is not installed. "
            f"Install it with: pip install 'django-voiceagents[{extra}]'"
        )
