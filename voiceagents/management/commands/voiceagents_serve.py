"""Serve the project in production: W worker processes behind one port (voiceagents.serve)."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from voiceagents.serve import cli


class Command(BaseCommand):
    help = (
        "Serve the ASGI app with W uvicorn worker processes behind one port (a listening socket "
        "each, balanced by the kernel), restart a worker that dies, and drain the live calls on "
        "SIGTERM. The same as python -m voiceagents.serve; see deploy/README.md."
    )

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            status = cli.serve(argparse.Namespace(**options))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if status:
            raise SystemExit(status)
