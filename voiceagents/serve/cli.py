"""The command line of ``voiceagents.serve`` (and of ``manage.py voiceagents_serve``)."""

from __future__ import annotations

import argparse
import os

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app",
        nargs="?",
        metavar="APP",
        help="The ASGI application as module:attribute (default: settings.ASGI_APPLICATION).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on (default 127.0.0.1; 0.0.0.0: every interface).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="Port to listen on (default 8000; 0: a free one, logged).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", 1)),
        help="Worker processes (default: $WEB_CONCURRENCY or 1); one per core.",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=2048,
        help="Listen backlog of each worker's socket (default 2048).",
    )
    parser.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="uvicorn's and ours (default info)."
    )
    parser.add_argument(
        "--shared-socket",
        action="store_true",
        help="One listening socket shared by the workers (the default only where SO_REUSEPORT "
        "does not balance connections, i.e. not on Linux): the busiest worker may take most.",
    )


def default_app() -> str:
    """settings.ASGI_APPLICATION in uvicorn's form: ``patter_site.asgi:application``."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        path = getattr(settings, "ASGI_APPLICATION", None)
    except ImproperlyConfigured as exc:
        raise ValueError(
            f"give APP (module:attribute) or set DJANGO_SETTINGS_MODULE: {exc}"
        ) from exc
    if not path:
        raise ValueError("give APP (module:attribute): settings.ASGI_APPLICATION is not set")
    module, _, attribute = path.rpartition(".")
    return f"{module}:{attribute}"


def options_from(namespace: argparse.Namespace):
    from .supervisor import Options

    if namespace.workers < 1:
        raise ValueError("--workers must be 1 or more")
    app = namespace.app or default_app()
    if ":" not in app:
        raise ValueError(f"APP must be module:attribute, not {app!r}")
    return Options(
        app=app,
        host=namespace.host,
        port=namespace.port,
        workers=namespace.workers,
        backlog=namespace.backlog,
        log_level=namespace.log_level,
        shared_socket=namespace.shared_socket,
    )


def serve(namespace: argparse.Namespace) -> int:
    """Run the supervisor until it stops; its exit status."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "voiceagents.serve runs uvicorn: pip install 'django-voiceagents[prod]'"
        ) from exc
    from . import logs
    from .supervisor import Supervisor

    logs.configure(namespace.log_level)
    return Supervisor(options_from(namespace)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voiceagents.serve",
        description="Serve the ASGI app with W worker processes behind one port, each drained on "
        "SIGTERM (deploy/README.md).",
    )
    add_arguments(parser)
    namespace = parser.parse_args(argv)
    try:
        return serve(namespace)
    except ValueError as exc:
        parser.error(str(exc))
