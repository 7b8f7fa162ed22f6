"""What every carrier's webhooks share: the base view, public URLs and log-safe phone numbers.

The base view fixes the order of work for every carrier webhook: verify, then parse,
then act, then respond. Carriers plug in verification as named methods (``verifiers``), so that
mixins compose without ``super()`` chains, and implement ``parse()`` and ``handle()``.

It fails closed: a request that fails verification gets 403 (and a WARNING on the
``telephony.security`` logger, never with the signature), and a server that has no secret to verify
with gets 503 (and an ERROR naming the missing setting) rather than silently accepting the call.
``VOICEAGENTS['VERIFY_SIGNATURES'] = False`` skips verification for local development only; the
``voiceagents.W001`` system check warns when it is off outside DEBUG.

It answers in time: carriers give up on a webhook after a few seconds (Twilio at 15 s), and a
caller then hears the carrier's own error. When the work has not answered within
``VOICEAGENTS['WEBHOOK_DEADLINE']`` seconds, or the database failed it, the carrier gets the view's
``deadline_response()`` instead: an apology the caller hears, or a status the carrier retries.
The late work is left to finish on its own, never cancelled halfway through a transaction, away
from the request's thread (in the database thread, ``voiceagents.dbthread``, or a thread of its
own): under ASGI, Django's middleware passes the response through the request's thread, which
the stuck work would otherwise hold until it ends.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from voiceagents import dbthread
from voiceagents.conf import get_setting
from voiceagents.exceptions import ConfigurationError, WebhookValidationFailure

from .. import limits

logger = logging.getLogger(__name__)
#: Rejected signatures go here, like Django's ``django.security``, so operators can route them.
security_logger = logging.getLogger("telephony.security")

_WS_SCHEMES = {"https": "wss", "http": "ws"}


def mask_number(number: str | None) -> str:
    """A phone number safe to log: only its last four characters (never log a number in full)."""
    if not number:
        return "(none)"
    return "…" + number[-4:]


def public_base_url() -> str:
    """``VOICEAGENTS['PUBLIC_URL']`` without a trailing slash.

    Carriers sign the URL they requested, so it is rebuilt from this setting rather than from the
    request, which behind a TLS-terminating proxy may say ``http://`` or an internal host name.
    """
    value = get_setting("PUBLIC_URL")
    if not value:
        raise ConfigurationError(
            "No public base URL: set VOICEAGENTS['PUBLIC_URL'] or the VOICEAGENTS_PUBLIC_URL "
            "environment variable to the https address carriers reach, e.g. https://voice.example.com"
        )
    parts = urlsplit(str(value))
    if parts.scheme not in _WS_SCHEMES or not parts.netloc:
        raise ConfigurationError(f"VOICEAGENTS['PUBLIC_URL'] = {value!r} is not an http(s) URL")
    return str(value).rstrip("/")


def public_url(path: str, query_string: str = "") -> str:
    """The public https URL of ``path`` (a request path, starting with ``/``)."""
    url = public_base_url() + path
    return f"{url}?{query_string}" if query_string else url


def websocket_url(path: str, base_url: str | None = None) -> str:
    """The public ``wss://`` URL of ``path``: the public base URL with https→wss (http→ws)."""
    base = (base_url or public_base_url()).rstrip("/")
    scheme, rest = base.split("://", 1)
    return f"{_WS_SCHEMES.get(scheme.lower(), scheme)}://{rest}{path}"


def verification_enabled() -> bool:
    """False only when ``VOICEAGENTS['VERIFY_SIGNATURES']`` is off (development)."""
    return bool(get_setting("VERIFY_SIGNATURES", cast=bool))


def _close_connections() -> None:
    """This thread's database connections: no ``request_finished`` closes them (it runs elsewhere)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


class CarrierWebhookView(View):
    """Base view of every carrier webhook: verify → parse → act → respond.

    Subclasses set ``carrier`` and ``verifiers`` and implement ``parse()`` and ``handle()``.
    A verifier is a method ``(request) -> None`` that raises ``WebhookValidationFailure`` when the
    request is not authentic and ``ConfigurationError`` when this server lacks the secret.
    """

    #: Carrier id, as in the ``carriers`` registry; used in log lines.
    carrier: str = ""
    #: Names of verifier methods; every one must pass. Mixins contribute names.
    verifiers: tuple[str, ...] = ()
    #: POST carries the webhook; HEAD answers reachability probes and does nothing else.
    http_method_names = ["post", "head"]

    @classmethod
    def as_view(cls, **initkwargs):
        if not cls.verifiers:
            # Fail closed at URL-loading time rather than accept unauthenticated webhooks.
            raise ImproperlyConfigured(f"{cls.__name__} declares no verifiers")
        view = super().as_view(**initkwargs)
        # Carriers send neither a CSRF token nor a session: the signature is the authentication.
        return csrf_exempt(login_not_required(view))

    def dispatch(self, request: HttpRequest, *args, **kwargs):
        # Before verification: a flood of forged requests must not cost a signature check each.
        ip = limits.request_ip(request)
        if not limits.allow_webhook(ip):
            security_logger.warning(
                "Refused %s webhook %s from %s: over WEBHOOK_RATE_PER_IP",
                self.carrier,
                request.path,
                ip,
            )
            refused = HttpResponse(
                "Too many requests",
                status=429,
                content_type="text/plain",
                headers={"Retry-After": "60"},
            )
            if self.view_is_async:

                async def answer():
                    return refused

                return answer()
            return refused
        return super().dispatch(request, *args, **kwargs)

    async def head(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return HttpResponse()

    async def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        """``answer()``, or ``deadline_response()`` when it is late or the database failed it."""
        deadline = float(get_setting("WEBHOOK_DEADLINE", cast=float))
        work = asyncio.ensure_future(self._answer_apart(request))
        done, _ = await asyncio.wait({work}, timeout=deadline)
        if not done:
            work.add_done_callback(self._log_late_outcome)
            logger.error(
                "%s webhook %s: no answer within WEBHOOK_DEADLINE (%g s), the database may be "
                "down or slow; answered: %s",
                self.carrier,
                request.path,
                deadline,
                self.deadline_answer,
            )
            return self.deadline_response(request)
        try:
            return work.result()
        except DatabaseError:
            logger.exception(
                "%s webhook %s: database error; answered: %s",
                self.carrier,
                request.path,
                self.deadline_answer,
            )
            return self.deadline_response(request)

    #: What ``deadline_response()`` tells the carrier, for the log line.
    deadline_answer = "503, for the carrier to retry"

    def deadline_response(self, request: HttpRequest) -> HttpResponse:
        """The answer when the work is late or the database failed: 503, which carriers retry."""
        return HttpResponse(
            "Service unavailable: try again later", status=503, content_type="text/plain"
        )

    def _log_late_outcome(self, work: asyncio.Future) -> None:
        if work.cancelled():
            return
        error = work.exception()
        if error is not None:
            logger.error("%s webhook: the late work failed too: %r", self.carrier, error)
        else:
            logger.warning("%s webhook: the late work finished after the deadline", self.carrier)

    async def _answer_apart(self, request: HttpRequest) -> HttpResponse:
        """``answer()``, under ASGI away from the request's thread.

        A view that keeps the default ``answer()`` runs ``respond()`` whole in the process's
        database thread (``voiceagents.dbthread``): no thread and no database connection of its
        own per request. A view with its own ``answer()`` (sync steps between awaits) gets a
        thread of its own for the request, which closes its database connections at the end.
        Under WSGI and Django's test ``Client`` the request's thread already is the caller's own.
        """
        if not isinstance(request, ASGIRequest):
            return await self.answer(request)
        if type(self).answer is CarrierWebhookView.answer:
            return await dbthread.run(self.respond, request)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.carrier}-webhook")
        try:
            async with ThreadSensitiveContext(executor=executor):
                try:
                    return await self.answer(request)
                finally:
                    await sync_to_async(_close_connections)()
        finally:
            executor.shutdown(wait=False)

    async def answer(self, request: HttpRequest) -> HttpResponse:
        """Verify, parse, act and respond: ``respond()``, in a thread, as it works with the database."""
        return await sync_to_async(self.respond)(request)

    def respond(self, request: HttpRequest) -> HttpResponse:
        rejection = self.run_verifiers(request)
        if rejection is not None:
            return rejection
        event = self.parse(request)
        return self.handle(request, event)

    def run_verifiers(self, request: HttpRequest) -> HttpResponse | None:
        """None when the request may be acted on, else the 403 or 503 response to send."""
        if not verification_enabled():
            logger.debug("%s webhook %s: signature checks are disabled", self.carrier, request.path)
            return None
        try:
            for name in self.verifiers:
                getattr(self, name)(request)
        except WebhookValidationFailure as err:
            security_logger.warning(
                "Rejected %s webhook %s from %s: %s",
                self.carrier,
                request.path,
                request.META.get("REMOTE_ADDR", "?"),
                err,
            )
            return HttpResponse(
                "Forbidden: invalid signature", status=403, content_type="text/plain"
            )
        except ConfigurationError as err:
            logger.error("Cannot verify %s webhook %s: %s", self.carrier, request.path, err)
            return HttpResponse(
                f"Service unavailable: webhook verification is not configured. {err}",
                status=503,
                content_type="text/plain",
            )
        return None

    def parse(self, request: HttpRequest) -> Any:
        """Turn the verified request into the carrier's event object. Subclasses implement this."""
        raise NotImplementedError(f"{self.__class__.__name__}.parse()")

    def handle(self, request: HttpRequest, event: Any) -> HttpResponse:
        """Act on the event and build the response. Subclasses implement this."""
        raise NotImplementedError(f"{self.__class__.__name__}.handle()")
