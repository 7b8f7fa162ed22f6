"""``CallSession``: the per-call orchestrator between a carrier stream and a voice provider.

One session per live call, created by the carrier's media consumer once the stream's ``start`` is
authenticated and the call snapshotted (``callsetup.start_call``). It owns every per-call object
and task, and dies with the call. Its work is split between owned collaborators
(``voiceagents/call/``): ``CallerAudio`` (caller → provider), ``Playback`` (provider → carrier,
marks, heard position), ``TurnTracker`` (turns by neutral turn id), ``CallMetrics``, the optional
``LocalSpeechDetector``, the recorder, the transcript writer and the ``ProviderKeeper``
(``reconnect``: a provider that drops mid-call is reopened with the conversation so far, one the
vendor limits in time is renewed). The session wires them together: it opens the provider,
routes its events, runs the barge-in and ends the call.

The provider speaks the neutral vocabulary of ``providers.base`` (turn ids of its choosing,
``interrupt(heard_ms)``) and declares its ``capabilities``; the session adapts to them (a
provider that ``needs_local_vad`` gets caller speech detected here).

An outbound call placed with answering-machine detection passes the ``amd.AmdGate`` first: the
first message waits for the carrier's verdict (``amd_result``, from the control plane) and the
callee's audio is recorded but not passed on until then; a machine gets the voicemail message or
the call ends (docs/outbound.md).

A carrier's media consumer uses only this handle: ``caller_audio``, ``mark_echoed``, ``dtmf``,
``say``, ``amd_result``, ``end``, ``call_ms``, ``playout_buffered_ms``, ``record_event``,
``carrier_metrics``, ``background``, ``start`` and ``ended``; the session uses only its
``CarrierLink``.

Hot path (per 20 ms frame, both directions): no database, no channel layer, no thread hop, no
settings. Caller audio goes to the recorder's memory buffer and straight to the provider socket;
agent audio goes through the pacer to the carrier with a mark every ``mark_interval_ms``, so the
session knows what the caller has heard when a barge-in comes. Transcripts and timeline events
are written by a background task in batches. While the agent talks, each caller frame is also
compared with the agent audio just sent (``EchoDetector``, numpy, ~15 µs): a speakerphone's echo
goes on as silence. A barge-in is followed by a verdict (``FalseBargeWatch``): a noise with no
words makes the provider ``resume`` (docs/interruptions.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import os
from contextlib import aclosing

from .. import dbthread
from ..audio.echo import EchoDetector
from ..audio.pacer import PacedFrame
from ..audio.recorder import CallRecorder
from ..exceptions import ProviderConnectionError, VoiceAgentsError
from ..providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    ConversationEnded,
    ProviderErrorEvent,
    ProviderEvent,
    ToolCall,
    VoiceProvider,
)
from . import callsetup, ownership
from .amd import MACHINE, AmdGate
from .caller_audio import PENDING_AUDIO_MS, CallerAudio
from .callsetup import CallContext
from .carrier_link import CarrierLink
from .false_barge import FALSE, FalseBargeWatch
from .local_vad import LocalSpeechDetector
from .metrics import CallMetrics
from .monitor import MonitorPublisher
from .playback import Playback
from .reconnect import ProviderKeeper
from .tools import run_tool
from .transcripts import BackgroundWriter, Turn
from .turns import TurnTracker

__all__ = ["PENDING_AUDIO_MS", "RECORDING_RATE", "CallSession", "CarrierLink"]

logger = logging.getLogger(__name__)

#: Keys pressed before the provider is open are kept (up to this many) and passed on after.
MAX_EARLY_DTMF = 32
#: Recording sample rate: the phone band; both carriers' audio fits it without loss of content.
RECORDING_RATE = 8000
#: Longest wait for the provider to finish speaking a voicemail message, then for it to play.
VOICEMAIL_SPEAK_S = 30.0
VOICEMAIL_PLAYOUT_S = 60.0


class CallLogAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"call {self.extra['call_id']}: {msg}", kwargs


class CallSession:
    def __init__(self, context: CallContext, carrier: CarrierLink, provider: VoiceProvider):
        self.ctx = context
        self.carrier = carrier
        self.provider = provider
        self.log = CallLogAdapter(logger, {"call_id": context.call_id})
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.metrics = CallMetrics()
        #: Agent turns whose audio has started, for an ending that waits for last words.
        self.agent_turns_started = 0
        self.inbound = CallerAudio(carrier.caller_format, self.metrics)
        self.playback = Playback(
            carrier,
            self.metrics,
            lead_ms=context.pacer_lead_ms,
            mark_interval_ms=context.mark_interval_ms,
            on_frame=self._on_frame,
        )
        #: The call's start, transcript lines and end, for the admin's live monitor.
        self.monitor = MonitorPublisher(context.call_id, self.log, metrics=self.metrics)
        self.writer = BackgroundWriter(
            context.call_id, self.log, settle=self._settle_turns, on_ready=self.monitor.lines
        )
        self.turns = TurnTracker(self.writer)
        #: Set when the provider needs caller speech detected here (see _connected).
        self.speech_detector: LocalSpeechDetector | None = None
        #: Finds caller frames that only echo the agent (a speakerphone): they go on as silence.
        self.echo: EchoDetector | None = None
        if context.echo_max_delay_ms > 0:
            self.echo = EchoDetector(
                carrier.caller_format,
                carrier.carrier_format,
                max_delay_ms=context.echo_max_delay_ms,
                lead_ms=context.pacer_lead_ms,
            )
        #: Base64 silence by frame length, sent in place of echo (pass-through providers).
        self._silence: dict[int, tuple[str, bytes]] = {}
        #: Decides whether a barge-in was the caller or a noise (None: not watched).
        self.false_barge: FalseBargeWatch | None = None
        if context.false_interruption_window_ms > 0:
            self.false_barge = FalseBargeWatch(context.false_interruption_window_ms / 1000)
        self._barge_timer: asyncio.TimerHandle | None = None
        self.recorder: CallRecorder | None = None
        self.recording_path: str | None = None
        if context.record:
            self.recording_path = os.path.join(
                context.recording_dir, f"voiceagents-{context.call_id}.wav"
            )
            self.recorder = CallRecorder(
                self.recording_path,
                sample_rate=RECORDING_RATE,
                caller_format=carrier.caller_format,
                agent_format=carrier.carrier_format,
            )
        self._tasks: list[asyncio.Task] = []
        #: Keys pressed while the provider was still opening.
        self._early_dtmf: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._ending = False
        self.ended = asyncio.Event()
        #: Reconnects the provider after a drop; renews sessions the vendor limits in length.
        self.keeper = ProviderKeeper(self)
        #: Outbound calls with answering-machine detection: the first message waits for the
        #: verdict, and the callee's audio is recorded but not passed on meanwhile (``call.amd``).
        self.amd = AmdGate(context.amd_timeout_s, context.answered_by) if context.amd else None
        self._amd_verdict: str | None = None
        self._muted = self.amd is not None
        #: Set when the voicemail message's turn finished (the provider said all of it).
        self._voicemail_said: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the provider in the background and start the session's tasks; returns at once."""
        self.log.info(
            "session starting (provider %s, carrier %s)", self.ctx.provider_id, self.ctx.carrier
        )
        self._spawn(self._provider_loop(), "provider")
        self._spawn(self.playback.run(), "playout")
        self.writer.start()
        ownership.hold(self.ctx.call_id)
        self._timer = self.loop.call_later(self.ctx.max_duration_s, self._on_max_duration)
        self.monitor.started(carrier=self.ctx.carrier, provider=self.ctx.provider_id)

    def background(self, coro, name: str) -> None:
        """Run ``coro`` as one of the call's tasks (cancelled when the call ends)."""
        self._spawn(coro, name)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"call-{self.ctx.call_id}-{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.log.error("task %s died", task.get_name(), exc_info=error)
            if not self._ending:
                self._spawn_end("internal_error", failed=True, error=repr(error))

    def _spawn_end(self, reason: str, *, failed: bool = False, error: str = "") -> None:
        asyncio.ensure_future(self.end(reason, failed=failed, error=error))

    def _on_max_duration(self) -> None:
        self.log.info("max call duration (%ss) reached", self.ctx.max_duration_s)
        self._spawn_end("max_duration")

    def call_ms(self, now: float | None = None) -> int:
        return int(((now if now is not None else self.loop.time()) - self.t0) * 1000)

    # -- what a carrier may ask of the session (besides the frame entry points below) ----------

    def playout_buffered_ms(self, now: float | None = None) -> float:
        """Agent audio sent to the carrier that it has not played yet, by real-time estimate."""
        return self.playback.buffered_ms(self.loop.time() if now is None else now)

    def record_event(self, kind: str, **data) -> None:
        """A timeline event at the current call time (written by the background writer)."""
        self.writer.event(kind, self.call_ms(), **data)

    def carrier_metrics(self, name: str, values) -> None:
        """Attach the carrier's own counters to the call's metrics (read at the end, by reference)."""
        self.metrics.carrier[name] = values

    async def _provider_loop(self) -> None:
        try:
            started = self.loop.time()
            if self.amd is not None and self.provider.capabilities.speaks_first_message:
                # This provider greets as it opens: open it once a person is known to listen.
                if not await self._answered_by_person(opened=False):
                    return
            if self.ctx.provisioner:
                # Usually no request at all; once per agent change and audio format it creates
                # or updates the vendor's side (e.g. the ElevenLabs agent).
                self.provider.update_options(await callsetup.provision(self.ctx))
            await self.provider.open()
            self.metrics.provider_connect_ms = round((self.loop.time() - started) * 1000, 1)
            self._connected()
            talk = self.amd is None or await self._answered_by_person(opened=True)
            if talk:
                if self.ctx.first_message and not self.provider.capabilities.speaks_first_message:
                    await self.provider.say(self.ctx.first_message)
                await self.inbound.flush()
                for digit in self._early_dtmf:
                    await self._pass_dtmf(digit)
                self._early_dtmf.clear()
            elif self._ending:
                return
            self.keeper.opened()
            while not self._ending:
                try:
                    if not await self._provider_events():
                        break  # the provider closed normally
                    await self.keeper.renew()
                except ProviderConnectionError as err:
                    # A drop mid-call: reconnect, or the keeper ends the call (provider_lost).
                    if self._ending or not await self.keeper.recover(err):
                        return
        except VoiceAgentsError as err:
            self.log.warning("provider failed: %s", err)
            await self.end("provider_error", failed=True, error=str(err))
            return
        if not self._ending:
            await self.end(
                "provider_closed", failed=True, error="The provider closed the connection."
            )

    async def _provider_events(self) -> bool:
        """Handle the provider's events until it closes (False) or is due for renewal (True)."""
        async with aclosing(self.provider.events()) as events:
            async for event in events:
                await self._handle(event)
                if self.keeper.renewal_due(event):
                    return True
        return False

    # -- answering-machine detection (outbound calls) --------------------------------------------

    def amd_result(self, answered_by: str) -> None:
        """The carrier's verdict, from the control plane (``amd`` command)."""
        if self.amd is None:
            return
        if self._amd_verdict is not None:
            # After the timeout the conversation has begun: a machine verdict now is too late.
            self.log.info("late answering-machine verdict %r ignored", answered_by)
        elif self.amd.decide(answered_by):
            self.log.info("answering-machine detection: %s", answered_by)

    async def _answered_by_person(self, *, opened: bool) -> bool:
        """Wait for the AMD verdict; True to go on as with a person. On a machine, leave the
        voicemail message (then the call ends; only once the provider is ``opened``) or end the
        call now; False."""
        gate = self.amd
        if self._amd_verdict is None:
            if not gate.decided:
                # A verdict that came before this call joined its control group is on the row.
                try:
                    stored = await dbthread.run(callsetup.answered_by, self.ctx.call_id)
                except Exception:  # noqa: BLE001 - the control plane may still bring it
                    self.log.exception("reading the stored AMD verdict failed")
                    stored = ""
                if stored:
                    gate.decide(stored)
            self._amd_verdict = await gate.wait()
            self.record_event("other", amd=gate.answered_by or "none", verdict=self._amd_verdict)
            self.log.info("AMD verdict %s (%s)", self._amd_verdict, gate.answered_by or "none")
        if self._amd_verdict != MACHINE:
            self._muted = False
            return True
        if self.ctx.machine_action == "voicemail" and opened:
            self._spawn(self._leave_voicemail(), "voicemail")
        else:
            await self.end("machine_hangup")
        return False

    async def _leave_voicemail(self) -> None:
        self._voicemail_said = asyncio.Event()
        await self.provider.say(self.ctx.voicemail_message)
        try:
            await asyncio.wait_for(self._voicemail_said.wait(), VOICEMAIL_SPEAK_S)
        except TimeoutError:
            self.log.warning("the voicemail message did not finish in %ss", VOICEMAIL_SPEAK_S)
        await self.end_after_playout("voicemail", grace_s=VOICEMAIL_PLAYOUT_S)

    def _connected(self) -> None:
        """The provider is open: set up the conversions and what its capabilities ask of us."""
        provider = self.provider
        self.inbound.connect(provider.send_audio, provider.input_format)
        self.playback.source_format(provider.output_format)
        if provider.capabilities.needs_local_vad:
            self.speech_detector = LocalSpeechDetector(self.carrier.caller_format)
        self.log.info(
            "provider connected in %s ms; audio in %s, out %s%s",
            self.metrics.provider_connect_ms,
            self.inbound.convert or "pass-through",
            self.playback.convert or "pass-through",
            "; caller speech detected locally" if self.speech_detector else "",
        )

    # -- caller → provider (hot path) ----------------------------------------------------------

    async def caller_audio(self, payload: str, audio: bytes, timestamp_ms: int | None) -> None:
        """One carrier media frame: ``payload`` is its base64 text, ``audio`` the decoded bytes."""
        if self._ending:
            return  # a frame sent after the stream's end (after ``stop``): nothing to do with it
        self.metrics.frames_in += 1
        if self.recorder is not None:
            self.recorder.write_caller(audio, timestamp_ms)
        if self._muted:
            return  # waiting for the answering-machine verdict: recorded, not passed on
        echo = self.echo
        if echo is not None and echo.is_echo(audio, self.loop.time()):
            # Only the agent's own voice coming back: the provider and our voice detector get
            # silence instead, so it cannot interrupt (the recording keeps what was sent).
            self.metrics.echo_frames += 1
            payload, audio = self._silent(len(audio))
        if self.speech_detector is not None:
            for event in self.speech_detector.feed(audio):
                await self._local_speech(event)
        inbound = self.inbound
        if not inbound.ready:
            inbound.hold(payload, audio)
            return
        try:
            await inbound.forward(payload, audio)
        except VoiceAgentsError:
            # The provider loop sees the same failure and ends the call; don't raise into receive().
            self.metrics.caller_audio_dropped_frames += 1

    def _silent(self, nbytes: int) -> tuple[str, bytes]:
        silent = self._silence.get(nbytes)
        if silent is None:
            fmt = self.carrier.caller_format
            audio = bytes([fmt.silence_byte]) * nbytes
            silent = self._silence[nbytes] = (base64.b64encode(audio).decode("ascii"), audio)
        return silent

    async def _local_speech(self, event: CallerSpeechStarted | CallerSpeechStopped) -> None:
        await self._handle(event)
        await self._quietly(self.provider.local_speech(event), "passing on caller speech")

    # -- provider events -----------------------------------------------------------------------

    async def _handle(self, event: ProviderEvent) -> None:
        if isinstance(event, AgentAudio):
            await self._agent_audio(event)
        elif isinstance(event, AgentTurnStarted):
            self.turns.agent_started(event.turn_id)
            if self.false_barge is not None:
                self.false_barge.agent_started()
        elif isinstance(event, AgentTranscript):
            self.turns.agent_transcript(event.turn_id, event.text, corrected=event.corrected)
        elif isinstance(event, AgentTurnFinished):
            self._agent_turn_finished(event)
        elif isinstance(event, CallerSpeechStarted):
            await self._caller_speech_started(event)
        elif isinstance(event, CallerSpeechStopped):
            self.metrics.speech_stopped(self.loop.time())
            self.turns.caller_stopped(event.turn_id, event.audio_ms)
            if self.false_barge is not None:
                self.false_barge.speech_stopped()
        elif isinstance(event, CallerTranscript):
            self.turns.caller_transcript(event.turn_id, event.text)
            if self.false_barge is not None:
                verdict = self.false_barge.transcript(event.text, event.turn_id)
                await self._barge_verdict(verdict)
        elif isinstance(event, ToolCall):
            # A task of its own: a tool may wait (end_call lets the goodbye play out) while the
            # provider's events keep flowing.
            self._spawn(run_tool(self, event), f"tool-{event.name}")
        elif isinstance(event, ProviderErrorEvent):
            await self._provider_error(event)
        elif isinstance(event, ConversationEnded):
            self.log.info("the provider ended the conversation: %s", event.reason or "no reason")
            await self.end_after_playout("provider_ended")

    async def _agent_audio(self, event: AgentAudio) -> None:
        turn = self.turns.current
        if turn is None or turn.turn_id != event.turn_id:
            turn = self._start_agent_audio(event.turn_id)
            if turn is None:
                self.metrics.agent_audio_dropped_chunks += 1
                return
        try:
            data = base64.b64decode(event.payload_b64)
        except (binascii.Error, ValueError):
            self.log.warning("provider sent audio that is not base64; skipped")
            return
        playback = self.playback
        if playback.convert is not None:
            data = playback.convert.convert(data)
        turn.end_pos = playback.push(data)
        # Audio due now (real-time speech once the lead is there) goes out from this task, one
        # scheduling round earlier than through the playout task; a burst still waits there.
        await playback.send_due()

    def _start_agent_audio(self, turn_id: str) -> Turn | None:
        if turn_id in self.turns.interrupted:
            return None
        self.agent_turns_started += 1
        if self.turns.current is None:
            pos = self.playback.pushed_ms()
        else:
            # Turns start on a frame boundary, so positions map cleanly to turns.
            pos = self.playback.end_segment()
            self.turns.end_current(pos)
        return self.turns.start_audio(turn_id, pos)

    def _agent_turn_finished(self, event: AgentTurnFinished) -> None:
        turn = self.turns.finishing(event.turn_id)
        if turn is not None:
            # Pad the last partial frame and mark the end of the reply.
            turn.end_pos = self.playback.end_segment()
        if self._voicemail_said is not None:
            self._voicemail_said.set()
        if event.error:
            self.record_event("error", turn_id=event.turn_id, message=event.error)

    async def _provider_error(self, event: ProviderErrorEvent) -> None:
        self.metrics.provider_errors += 1
        self.record_event("error", code=event.code, message=event.message)
        if event.fatal:
            await self.end("provider_error", failed=True, error=f"{event.code}: {event.message}")
        else:
            self.log.warning(
                "provider reported a recoverable error %s: %s", event.code, event.message
            )

    # -- barge-in -------------------------------------------------------------------------------

    async def _caller_speech_started(self, event: CallerSpeechStarted) -> None:
        now = self.loop.time()
        self.turns.caller_started(event.turn_id, event.audio_ms)
        if self.false_barge is not None:
            self.false_barge.speech_started(event.turn_id)
        turn = self.turns.last_playing()
        if turn is None:
            return
        if not (self.playback.is_playing(now) or self.turns.current is turn):
            return  # the agent had finished speaking: not an interruption
        await self._interrupt(turn, now, event.turn_id)

    async def _interrupt(self, turn: Turn, now: float, caller_turn: str = "") -> None:
        # Measure before clearing: the clear forgets what the carrier still had buffered. The
        # turn's audio received so far (its end moves with every chunk) is what was generated.
        generated = int(max(0.0, (turn.end_pos or 0.0) - (turn.start_pos or 0.0)))
        heard = self.turns.interrupt(turn, self.playback.heard_ms(now), self.call_ms(now))
        await self.playback.clear()
        if self.recorder is not None:
            self.recorder.clear_agent(self.call_ms(now))
        self.metrics.barge_in(
            round((self.loop.time() - now) * 1000, 2),
            at_ms=self.call_ms(now),
            heard_ms=heard,
            generated_ms=generated,
        )
        self.writer.event(
            "barge_in",
            self.call_ms(now),
            turn_id=turn.turn_id,
            audio_end_ms=heard,
            truncated=self.provider.capabilities.truncation,
        )
        self.log.debug("barge-in: %s heard %s ms", turn.turn_id, heard)
        await self._quietly(
            self.provider.interrupt(heard), "telling the provider about the barge-in"
        )
        if self.false_barge is not None:
            # Real or noise? Decided by the caller's words (or none) within the window.
            self.false_barge.begin(turn.turn_id, heard, now, caller_turn)
            if self._barge_timer is not None:
                self._barge_timer.cancel()
            self._barge_timer = self.loop.call_at(
                self.false_barge.deadline(), self._barge_window_over
            )

    def _barge_window_over(self) -> None:
        self._barge_timer = None
        if self.false_barge is not None and not self._ending:
            self._spawn(self._barge_verdict(self.false_barge.expired()), "barge-verdict")

    async def _barge_verdict(self, verdict: str | None) -> None:
        """The last barge-in was found real or false (``None``: not decided yet)."""
        if verdict is None or self.false_barge is None:
            return
        pending = self.false_barge.take()
        if pending is None:
            return
        if self._barge_timer is not None:
            self._barge_timer.cancel()
            self._barge_timer = None
        if verdict != FALSE:
            return
        self.metrics.false_interruption()
        # The agent already went on to something else (its audio queued or heard): no silence
        # to fill. Otherwise the provider picks the interrupted turn up again.
        answered = any(
            turn.turn_id != pending.turn_id and turn.start_pos is not None and not turn.interrupted
            for turn in self.turns.playing
        )
        resumed = False
        if not answered and not self._ending:
            try:
                resumed = await self.provider.resume()
            except Exception:
                self.log.exception("resuming after a false interruption failed")
        self.writer.event(
            "false_interruption",
            self.call_ms(),
            turn_id=pending.turn_id,
            audio_end_ms=pending.heard_ms,
            after_ms=round((self.loop.time() - pending.at) * 1000),
            resumed=resumed,
        )
        self.log.info(
            "false interruption of %s (no caller words after %s ms heard): %s",
            pending.turn_id,
            pending.heard_ms,
            "resumed"
            if resumed
            else ("the agent had gone on" if answered else "the provider cannot resume"),
        )

    # -- provider → carrier: what was heard ----------------------------------------------------

    def _on_frame(self, frame: PacedFrame) -> None:
        """Every agent frame sent (hot path): record it, and note when a turn starts playing."""
        at_ms = (frame.play_at - self.t0) * 1000
        if self.recorder is not None:
            self.recorder.write_agent(frame.data, at_ms)
        if self.echo is not None:
            self.echo.played(frame.data, self.loop.time())
        metrics = self.metrics
        if metrics.greeting_latency_ms is None:
            metrics.greeting_latency_ms = round((self.loop.time() - self.t0) * 1000, 1)
        if self.turns.heard_from(frame.start_ms, int(at_ms)):
            metrics.agent_heard(self.loop.time())

    def mark_echoed(self, name: str) -> None:
        """The carrier played everything sent before mark ``name``."""
        self.playback.mark_echoed(name)

    def _settle_turns(self) -> None:
        """Agent turns are settled once fully played (or interrupted); called by the writer."""
        self.turns.settle(self.playback.heard_ms(self.loop.time()))

    # -- other carrier input ---------------------------------------------------------------------

    async def dtmf(self, digit: str) -> None:
        self.metrics.dtmf += 1
        self.record_event("dtmf", digit=digit)
        if self.inbound.ready:
            await self._pass_dtmf(digit)
        elif len(self._early_dtmf) < MAX_EARLY_DTMF:
            self._early_dtmf.append(digit)  # passed on once the provider is open

    async def _pass_dtmf(self, digit: str) -> None:
        try:
            await self.provider.send_dtmf(digit)
        except VoiceAgentsError as err:
            self.log.warning("cannot pass DTMF to the provider: %s", err)

    async def say(self, text: str) -> None:
        if self.inbound.ready:
            await self.provider.say(text)
        else:
            self.log.warning("say dropped: the provider is not open yet")

    # -- the end ----------------------------------------------------------------------------------

    async def end_after_playout(
        self, reason: str, *, grace_s: float = 10.0, goodbye_start_s: float = 0.0
    ) -> None:
        """End the call once the agent has finished speaking and its audio has played
        (``grace_s`` at most). With ``goodbye_start_s``, an agent that is silent now gets that
        long to start its last words (the pipeline writes and synthesizes them first)."""
        now = self.loop.time()
        deadline = now + grace_s
        if goodbye_start_s and not self._agent_speaking(now):
            started, start_by = self.agent_turns_started, now + goodbye_start_s
            while self.agent_turns_started == started and self.loop.time() < start_by:
                await asyncio.sleep(0.05)
        while self.loop.time() < deadline and self._agent_speaking(self.loop.time()):
            await asyncio.sleep(0.05)
        await self.end(reason)

    def _agent_speaking(self, now: float) -> bool:
        """A turn still receiving audio, or audio not yet played."""
        return self.turns.current is not None or self.playback.is_playing(now)

    async def end(
        self, reason: str, *, failed: bool = False, error: str = "", by_carrier: bool = False
    ) -> None:
        """End the call: quick, idempotent, and it never loses what was already recorded."""
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        self.log.info("ending: %s%s", reason, f" ({error})" if error else "")
        final_status = ""
        try:
            if self._timer is not None:
                self._timer.cancel()
            if self._barge_timer is not None:
                self._barge_timer.cancel()
            if not by_carrier:
                await self._quietly(self.carrier.end_call(), "closing the carrier stream")
            self.playback.close()
            current = asyncio.current_task()
            others = [t for t in self._tasks if t is not current and not t.done()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._quietly(self.provider.close(), "closing the provider")
            try:
                self.metrics.carrier.update(self.provider.report())
            except Exception:
                self.log.exception("reading the provider's figures failed")
            if self.provider.usage:
                self.metrics.carrier["usage"] = self.provider.usage.report()
            # Playback's network estimates, when it has them (read once, here).
            self.metrics.network(self.playback.delay_ms, self.playback.jitter_ms)
            now = self.loop.time()
            self.turns.close(self.call_ms(now))
            recording_ms = None
            if self.recorder is not None:
                try:
                    recording_ms = self.recorder.close(self.call_ms(now)).duration_ms
                except OSError:
                    self.log.exception("cannot finalise the recording")
            # The transcript's last rows go in the end's own transaction.
            final_status, reason = await self.writer.close_with(
                functools.partial(
                    callsetup.finish_call_with_transcript,
                    call_id=self.ctx.call_id,
                    failed=failed,
                    end_reason=reason,
                    error=error,
                    metrics=self.metrics.report(self.call_ms()),
                    recording_path=self.recording_path if recording_ms is not None else None,
                    recording_ms=recording_ms,
                    provider_session_id=self.provider.session_id,
                )
            )
        except Exception:
            self.log.exception(
                "ending the call failed; finalize_call and reconcile_stale_calls will close it"
            )
        finally:
            ownership.release(self.ctx.call_id)
            self.monitor.ended(status=final_status, end_reason=reason)
            await self.monitor.close()
            self.ended.set()

    async def _quietly(self, coro, what: str) -> None:
        try:
            await coro
        except Exception:
            self.log.exception("%s failed", what)
