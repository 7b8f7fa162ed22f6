"""Carrier webhooks served beside Django's request handling, not through it (opt-in).

``CarrierWebhookRouter(django_asgi_app)`` is an ASGI app for the ``"http"`` protocol: a POST or HEAD
whose path resolves to a carrier webhook view (``CarrierWebhookView``: Twilio's voice, status and
AMD callbacks, Telnyx's webhook) is answered by that view directly; every other request goes to
Django as before.

Why: under ASGI, Django runs each of a site's ``MiddlewareMixin`` middlewares (Django's own
included) through ``sync_to_async`` hops into a thread it starts for the request, and joins that
thread at the end, blocking the event loop meanwhile. For the voice webhook that was about
2 ms of CPU per call, an eighth of a call's whole set-up (docs/benchmarks.md). A webhook needs
none of it: it is authenticated by the carrier's signature, carries no session, cookie or CSRF
token, and answers TwiML or JSON.

What the direct path keeps: Django's own request object, body limits
(``DATA_UPLOAD_MAX_MEMORY_SIZE``: 400), script prefix, response encoding, and its handling of an
exception in the view (logged by ``django.request``, 500, the site's ``handler500``). What it
skips: the site's middlewares and the ``request_started`` / ``request_finished`` signals, for these
paths only. The view's own checks (its verifiers, ``WEBHOOK_RATE_PER_IP``, the deadline) are the
same on both paths. A site whose middleware must see carrier webhooks (request logging, metrics)
leaves the router out: the views work through Django's handler unchanged.
"""

from __future__ import annotations

import functools
import logging

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import Resolver404, ResolverMatch, get_resolver, set_script_prefix

from .carriers.base import CarrierWebhookView

logger = logging.getLogger(__name__)

#: The methods a carrier webhook view answers; others (a GET's 405) go through Django.
DIRECT_METHODS = frozenset({"POST", "HEAD"})


class CarrierWebhookRouter:
    """HTTP: carrier webhooks straight to their views, everything else to ``django_app``."""

    def __init__(self, django_app: ASGIHandler) -> None:
        if not isinstance(django_app, ASGIHandler):
            raise TypeError(
                "CarrierWebhookRouter wraps Django's ASGI handler (get_asgi_application()), "
                f"not {type(django_app).__name__}"
            )
        self.django_app = django_app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in DIRECT_METHODS:
            match = webhook_match(_path_info(scope))
            if match is not None:
                await self._serve(match, scope, receive, send)
                return
        await self.django_app(scope, receive, send)

    async def _serve(self, match: ResolverMatch, scope, receive, send) -> None:
        handler = self.django_app
        try:
            body_file = await handler.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = handler.create_request(scope, body_file)
            if request is None:
                await handler.send_response(error_response, send)
                return
            request.resolver_match = match
            try:
                response = await match.func(request, *match.args, **match.kwargs)
            except Exception as exc:  # noqa: BLE001 - Django's answer to any view exception
                response = response_for_exception(request, exc)
            await handler.send_response(response, send)
        finally:
            body_file.close()


def _path_info(scope) -> str:
    """The path below the script prefix, as Django's ``ASGIRequest`` computes it (the same
    expression: the router must resolve what Django would)."""
    script_name = get_script_prefix(scope)
    return scope["path"].removeprefix(script_name) if script_name else scope["path"]


@functools.lru_cache(maxsize=256)
def webhook_match(path_info: str) -> ResolverMatch | None:
    """The URLconf's match for ``path_info`` if it is a carrier webhook view, else None.

    Cached: a process sees a handful of webhook paths (a flood of made-up paths only evicts
    entries; each miss is one resolve, as Django would do).
    """
    try:
        match = get_resolver().resolve(path_info)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    if isinstance(view_class, type) and issubclass(view_class, CarrierWebhookView):
        return match
    return None


@receiver(setting_changed)
def _forget_matches(*, setting: str, **kwargs) -> None:
    """Another URLconf (tests' ``override_settings``): Django forgets its resolvers, and so do we."""
    if setting == "ROOT_URLCONF":
        webhook_match.cache_clear()
