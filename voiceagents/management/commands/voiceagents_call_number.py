"""Place an outbound call: the agent dials a number from one of its phone numbers."""

import json

from django.core.management.base import BaseCommand, CommandError

from voiceagents.models import Agent
from voiceagents.outbound import OutboundCallError, place_call


class Command(BaseCommand):
    help = (
        "Have an agent call a phone number through the carrier of one of its numbers "
        "(docs/outbound.md). Prints the Call's id; the call then runs in the ASGI server."
    )

    def add_arguments(self, parser):
        parser.add_argument("agent", help="The agent's slug (or numeric id).")
        parser.add_argument("to", help="The number to call, in international format (+1415...).")
        parser.add_argument(
            "--from", dest="from_number", help="One of the agent's numbers (default: its first)."
        )
        parser.add_argument("--first-message", help="Replaces the agent's first message.")
        parser.add_argument(
            "--variables", help='JSON object of variables for this call, e.g. \'{"name": "Ada"}\'.'
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Hand the call to a Celery worker (voiceagents.place_call) instead of dialling here.",
        )

    def handle(self, *args, agent, to, from_number, first_message, variables, queue, **options):
        found = Agent.objects.filter(slug=agent).first()
        if found is None and agent.isdigit():
            found = Agent.objects.filter(pk=int(agent)).first()
        if found is None:
            raise CommandError(f"No agent with the slug or id {agent!r}.")
        try:
            values = json.loads(variables) if variables else {}
        except ValueError as err:
            raise CommandError(f"--variables is not JSON: {err}") from err
        if queue:
            from voiceagents.tasks import place_call as task

            result = task.delay(found.pk, to, from_number, first_message, values)
            self.stdout.write(f"Queued: Celery task {result.id}.")
            return
        try:
            call = place_call(found, to, from_number, first_message=first_message, variables=values)
        except OutboundCallError as err:
            failed = f" (call {err.call.pk} failed)" if err.call is not None else ""
            raise CommandError(f"The call was not placed{failed}: {err}") from err
        self.stdout.write(f"Call {call.pk}: {call.from_number} -> {call.to_number}, {call.status}.")
