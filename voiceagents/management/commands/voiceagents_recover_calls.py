"""Close the calls of server processes that stopped; run it when a server (re)starts."""

from django.core.management.base import BaseCommand

from voiceagents import services


class Command(BaseCommand):
    help = (
        "Close calls whose server process stopped (killed, crashed, restarted) as lost, attach "
        "their partial recordings and tidy RECORDING_TMP_DIR. The same as the "
        "voiceagents.recover_lost_calls beat task; run it from a start-up script."
    )

    def handle(self, *args, **options):
        closed = services.recover_lost_calls()
        self.stdout.write(f"Closed {closed} lost call(s).")
