"""``phone.serve()``: set Django up, store the agent, and run the project's ASGI app under uvicorn.

The order matters: settings first (the public URL is read when they load), then the database
(migrate, the script's rows), then the reply handler, then the server, in the caller's event
loop so ``serve()`` returns, or raises ``CancelledError``, when the server stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .api import AgentConfig, Patter

logger = logging.getLogger("patter")

#: The settings ``serve()`` uses when the process has none (see ``patter.settings``).
SETTINGS_MODULE = "patter.settings"


def public_url(webhook_url: str) -> str:
    """``webhook_url`` as the project's PUBLIC_URL: https unless a scheme is given, no slash
    at the end (``abc.ngrok.app`` → ``https://abc.ngrok.app``)."""
    url = webhook_url.strip().rstrip("/")
    if url and "://" not in url:
        url = "https://" + url
    if url and not urlsplit(url).hostname:
        raise ValueError(f"webhook_url must be a host name or an https URL, not {webhook_url!r}")
    return url


def configure(webhook_url: str) -> None:
    """Set Django up with ``patter.settings`` unless the process already chose its settings.

    ``webhook_url`` becomes PUBLIC_URL, the address the carriers are told to call back
    (Twilio also signs its requests with it). Settings chosen by the process are left alone,
    so their PUBLIC_URL must already agree.
    """
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    url = public_url(webhook_url)
    if not settings.configured and "DJANGO_SETTINGS_MODULE" not in os.environ:
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        if url:
            # Read by patter_site's settings when they load, which also allows its host.
            os.environ["VOICEAGENTS_PUBLIC_URL"] = url
    django.setup()

    from voiceagents.conf import get_setting

    configured = (get_setting("PUBLIC_URL") or "").rstrip("/")
    if url and configured != url:
        raise ImproperlyConfigured(
            f"webhook_url is {url!r} but the Django settings' PUBLIC_URL is {configured!r}: "
            "set VOICEAGENTS_PUBLIC_URL to the same address, or leave DJANGO_SETTINGS_MODULE "
            "unset so phone.serve() configures Django itself."
        )
    if not configured:
        raise ImproperlyConfigured(
            "phone.serve() needs webhook_url in Patter(...): the public https address "
            "(e.g. an ngrok tunnel) the carrier reaches this server at."
        )


def handler_name(on_message: Callable[..., Any]) -> str:
    """The name ``on_message`` is registered under: its dotted path, stable across restarts."""
    module = getattr(on_message, "__module__", None) or "script"
    qualname = getattr(on_message, "__qualname__", None) or type(on_message).__qualname__
    name = f"{module}.{qualname}"
    if len(name) > 100:  # Agent.reply_handler's max_length
        raise ValueError(f"on_message's dotted name is longer than 100 characters: {name}")
    return name


def prepare(phone: Patter, config: AgentConfig, name: str):
    """Migrate and store the script's rows (synchronous: Django's ORM, off the event loop)."""
    from django.core.management import call_command
    from django.db import connections

    from .store import store

    try:
        call_command("migrate", interactive=False, verbosity=0)
        return store(phone, config, name)
    finally:
        # This thread is done with the database; calls open their own connections.
        connections.close_all()


async def serve(
    phone: Patter,
    config: AgentConfig,
    on_message: Callable[..., Any] | None,
    *,
    host: str,
    port: int,
    log_level: str,
) -> None:
    from asgiref.sync import sync_to_async

    if config.provider == "pipeline" and on_message is None:
        raise ValueError(
            "provider='pipeline' needs on_message: the function that answers the caller's text"
        )
    if config.provider != "pipeline" and on_message is not None:
        raise ValueError(
            f"on_message is for provider='pipeline'; {config.provider!r} writes its own replies"
        )
    try:
        import uvicorn
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "phone.serve() runs uvicorn: pip install 'django-voiceagents[prod]'", name=err.name
        ) from err

    configure(phone.webhook_url)

    import voiceagents

    name = ""
    if on_message is not None:
        name = handler_name(on_message)
        voiceagents.reply_handler(name)(on_message)
    stored = await sync_to_async(prepare, thread_sensitive=False)(phone, config, name)

    from channels.routing import get_default_application
    from django.conf import settings

    application = get_default_application()
    logger.info(
        "Serving agent %r on %s (%s); database: %s",
        stored.agent.slug,
        stored.number.number,
        stored.number.carrier,
        settings.DATABASES["default"]["NAME"],
    )
    server = uvicorn.Server(
        uvicorn.Config(application, host=host, port=port, lifespan="off", log_level=log_level)
    )
    await server.serve()
