"""Call an agent as a simulated Twilio caller, against the running server, and print the call.

No phone, no carrier account, no tunnel: the command plays Twilio's part (signed voice webhook,
signed media stream, real-time audio, marks; see ``voiceagents.simulator``) against the server
started by ``make demo`` (or any server on the same database and settings). The caller's turns
are texts spoken by the offline voice (``--say``), WAV files (``--wav``) or key presses
(``--dtmf``), in the order given. The agent's words are read from the call's transcript as the
server writes it; its audio is saved to a WAV file.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from telephony.carriers.base import public_base_url
from telephony.carriers.twilio.signature import compute_signature
from voiceagents import simulator
from voiceagents.exceptions import ConfigurationError
from voiceagents.models import Agent, Call, CallStatus, Credential, PhoneNumber, TranscriptEntry
from voiceagents.models.calls import FINAL_STATUSES

#: Numbers made for agents that have none: +1 555 010 xxxx, in the 555 range kept for fiction.
SIMULATOR_PREFIX = "+1555010"
SIMULATOR_CALLER = "+15550100000"
SIMULATOR_LABEL = "Simulator (voiceagents_call_simulate)"
#: The agent's turn is over after this long without agent audio.
AGENT_DONE_QUIET_S = 2.0
#: How long the greeting may take to start (the first call may load voices and models).
GREETING_WAIT_S = 15.0
#: Seconds to wait for the final status once the caller hung up.
FINAL_STATUS_WAIT_S = 10.0


@dataclass(frozen=True)
class Turn:
    kind: str  # "say", "wav" or "dtmf"
    value: str


def _turn(kind):
    def parse(value: str) -> Turn:
        if kind == "dtmf" and (len(value) != 1 or value not in "0123456789*#"):
            raise ValueError(value)
        return Turn(kind, value)

    parse.__name__ = kind  # argparse names the type in its error message
    return parse


def find_agent(name: str) -> Agent:
    """The agent with this slug, else with this name (any case)."""
    agent = Agent.objects.filter(slug=name).first()
    agent = agent or Agent.objects.filter(name__iexact=name).order_by("pk").first()
    if agent is None:
        known = ", ".join(f"{a.name!r} ({a.slug})" for a in Agent.objects.all()[:20]) or "none"
        raise CommandError(f"No agent named {name!r}. Agents: {known}.")
    return agent


@transaction.atomic
def twilio_number_for(agent: Agent) -> tuple[PhoneNumber, bool]:
    """A Twilio number answered by ``agent``; ``(number, created)``.

    An agent without one gets a simulator number, with a Twilio credential of its own (a made-up
    account SID and auth token: the call never leaves this machine).
    """
    number = (
        agent.phone_numbers.filter(carrier="twilio", enabled=True)
        .select_related("credential")
        .order_by("pk")
        .first()
    )
    if number is not None:
        return number, False
    credential = Credential.objects.filter(vendor="twilio", label=SIMULATOR_LABEL).first()
    if credential is None:
        credential = Credential(
            vendor="twilio",
            label=SIMULATOR_LABEL,
            data={"account_sid": simulator.new_sid("AC")},
        )
        credential.secret = secrets.token_hex(16)
        credential.save()
    taken = set(
        PhoneNumber.objects.filter(number__startswith=SIMULATOR_PREFIX).values_list(
            "number", flat=True
        )
    )
    free = next(
        candidate
        for candidate in (f"{SIMULATOR_PREFIX}{i:04d}" for i in range(1, 10000))
        if candidate not in taken
    )
    number = PhoneNumber.objects.create(
        number=free, label=SIMULATOR_LABEL, carrier="twilio", credential=credential, agent=agent
    )
    return number, True


class Command(BaseCommand):
    help = (
        "Call an agent as a simulated Twilio caller against the running server (make demo): "
        "speak the --say texts or play the --wav files, print the conversation, save the "
        "agent's audio."
    )
    # A client of the running server, which checked its own settings: this terminal's (no
    # PUBLIC_URL, as a rule) would only print warnings about a server it is not.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--agent", required=True, help="The agent's name or slug.")
        parser.add_argument(
            "--say",
            dest="turns",
            action="append",
            type=_turn("say"),
            metavar="TEXT",
            help="A caller turn spoken by the offline voice. Repeat for more turns.",
        )
        parser.add_argument(
            "--wav",
            dest="turns",
            action="append",
            type=_turn("wav"),
            metavar="FILE",
            help="A caller turn played from a 16-bit WAV file (any rate). Repeatable.",
        )
        parser.add_argument(
            "--dtmf",
            dest="turns",
            action="append",
            type=_turn("dtmf"),
            metavar="KEY",
            help="A caller turn that presses a key: 0-9, * or #. Repeatable.",
        )
        parser.add_argument(
            "--server",
            default="http://127.0.0.1:8000",
            help="The running server (default: %(default)s, where make demo listens).",
        )
        parser.add_argument(
            "--out", default="agent.wav", help="WAV file for the agent's audio (%(default)s)."
        )
        parser.add_argument(
            "--voice",
            default=simulator.CALLER_VOICE,
            help="The offline voice that speaks --say (%(default)s).",
        )
        parser.add_argument(
            "--answer-timeout",
            type=float,
            default=30.0,
            help="Seconds to wait for the agent to start answering a turn (%(default)s).",
        )

    def handle(self, *args, agent, turns, server, out, voice, answer_timeout, **options):
        turns = turns or []
        server = server.rstrip("/")
        agent_row = find_agent(agent)
        number, created = twilio_number_for(agent_row)
        if created:
            self._say(
                f"{agent_row.name} had no Twilio number: created the simulator number "
                f"{number.number} and its Twilio credential {SIMULATOR_LABEL!r}."
            )
        try:
            public_base = public_base_url()
        except ConfigurationError:
            # No PUBLIC_URL here: the server was presumably started on --server itself.
            public_base = server
        token = number.credential.secret
        account_sid = number.credential.data.get("account_sid", "")
        try:
            audio = asyncio.run(self._prepare(turns, voice))
            call_sid = simulator.new_sid("CA")
            answer = simulator.post_voice_webhook(
                server,
                public_base,
                reverse("telephony:twilio_voice"),
                {
                    "CallSid": call_sid,
                    "AccountSid": account_sid,
                    "From": SIMULATOR_CALLER,
                    "To": number.number,
                    "CallStatus": "ringing",
                    "Direction": "inbound",
                    "ApiVersion": "2010-04-01",
                },
                token,
            )
            call_id = answer.parameters.get("call_id", "")
            self._say(f"Calling {agent_row.name} at {number.number} (call {call_id})")
            asyncio.run(
                self._converse(
                    answer,
                    server=server,
                    token=token,
                    call_sid=call_sid,
                    account_sid=account_sid,
                    call_id=call_id,
                    turns=turns,
                    audio=audio,
                    greeting=bool(agent_row.first_message.strip()),
                    answer_timeout=answer_timeout,
                    out=out,
                )
            )
        except simulator.SimulationError as err:
            raise CommandError(str(err)) from err
        self._report(call_id, server)

    # -- steps ----------------------------------------------------------------------------------

    async def _prepare(self, turns: list[Turn], voice: str) -> list[bytes]:
        """Every turn's audio before dialling, so synthesis never stalls the real-time stream."""
        audio = []
        for turn in turns:
            if turn.kind == "say":
                audio.append(await simulator.speak(turn.value, voice=voice))
            elif turn.kind == "wav":
                audio.append(simulator.read_wav(turn.value))
            else:
                audio.append(b"")
        return audio

    async def _converse(
        self, answer, *, server, token, call_sid, account_sid, call_id, turns, audio, **kw
    ):
        caller = await simulator.SimulatedCaller.dial(
            simulator.local_stream_url(answer.url, server),
            compute_signature(answer.url, None, token),
            call_sid=call_sid,
            account_sid=account_sid,
        )
        done = asyncio.Event()
        printer = asyncio.ensure_future(self._print_transcript(call_id, done))
        try:
            await caller.start(answer.parameters)
            await caller.wait_for_agent(GREETING_WAIT_S if kw["greeting"] else 1.0, 1.0)
            for turn, sound in zip(turns, audio, strict=True):
                if caller.closed.is_set():
                    break
                if turn.kind == "say":
                    self._say(f"caller: {turn.value}")
                    await caller.say(sound)
                elif turn.kind == "wav":
                    self._say(f"caller: [plays {turn.value}, {len(sound) / 8000:.1f} s]")
                    await caller.say(sound)
                else:
                    self._say(f"caller: [presses {turn.value}]")
                    await caller.dtmf(turn.value)
                answered = await caller.wait_for_agent(kw["answer_timeout"], AGENT_DONE_QUIET_S)
                if not answered and not caller.closed.is_set():
                    self._say(f"  (no answer from the agent within {kw['answer_timeout']:g} s)")
            if caller.closed.is_set():
                self._say(f"The server ended the call (WebSocket close code {caller.close_code}).")
            else:
                self._say("caller: [hangs up]")
        finally:
            await caller.hang_up()
            await self._wait_final(call_id)
            done.set()
            await printer
        simulator.write_wav(kw["out"], bytes(caller.agent_audio))
        self._say(f"Agent audio: {kw['out']} ({len(caller.agent_audio) / 8000:.1f} s)")

    async def _print_transcript(self, call_id: str, done: asyncio.Event) -> None:
        """Print the call's transcript rows as the server writes them, until ``done``."""
        last = -1
        while True:
            finished = done.is_set()  # read before the query: one more pass after it is set
            rows = await sync_to_async(_rows_after)(call_id, last)
            for seq, role, text, interrupted in rows:
                last = seq
                label = "caller (transcribed)" if role == "caller" else role
                self._say(f"{label}: {text}" + (" [interrupted]" if interrupted else ""))
            if finished:
                return
            await asyncio.sleep(0.2)

    async def _wait_final(self, call_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_STATUS_WAIT_S
        while loop.time() < deadline:
            status = await sync_to_async(_status)(call_id)
            if status is None or status in FINAL_STATUSES:
                return
            await asyncio.sleep(0.1)

    def _report(self, call_id: str, server: str) -> None:
        call = Call.objects.filter(pk=call_id).first()
        if call is None:
            raise CommandError(f"Call {call_id} is not in this database: is the server using it?")
        try:
            admin = server + reverse("admin:voiceagents_call_change", args=[call.pk])
        except NoReverseMatch:
            admin = ""
        duration = f", {call.duration.total_seconds():.1f} s" if call.duration else ""
        self._say(f"Call {call.pk}: {call.status} ({call.end_reason or 'no end reason'}{duration})")
        if admin:
            self._say(f"Admin: {admin}")
        if call.status != CallStatus.COMPLETED:
            raise CommandError(f"The call did not complete: {call.error or call.status}")

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()


def _rows_after(call_id: str, seq: int) -> list[tuple]:
    return list(
        TranscriptEntry.objects.filter(call_id=call_id, seq__gt=seq)
        .order_by("seq")
        .values_list("seq", "role", "text", "interrupted")
    )


def _status(call_id: str) -> str | None:
    return Call.objects.filter(pk=call_id).values_list("status", flat=True).first()
