"""``CallSession``: the per-call orchestrator between a carrier stream and a voice provider.

One session per live call, created by the carrier's media consumer once the stream's ``start`` is
authenticated and the call snapshotted (``callsetup.start_call``). It owns every per-call object
(provider, pacer, recorder, transcript writer) and task, and dies with the call.

Provider interface (``providers.base.VoiceProvider``), designed for the three seed modes:

- ``open()`` connects and configures; it sets ``input_format``/``output_format`` so that the
  session converts only where the carrier leg differs (Twilio μ-law ↔ OpenAI ``audio/pcmu`` is a
  pass-through of the very same base64 strings);
- ``send_audio(b64)`` takes caller audio; ``events()`` yields normalized events: ``AgentAudio``,
  ``AgentTurnStarted``, ``AgentTranscript``, ``AgentTurnDone``, ``CallerSpeechStarted``/``Stopped``,
  ``CallerTranscript``, ``ToolCall``, ``ProviderErrorEvent``;
- ``say(text)`` speaks (first message, operator ``say``), ``interrupt(item, heard_ms)`` handles a
  barge-in (OpenAI: truncate; a pipeline: stop TTS and forget the unheard text), ``send_dtmf``,
  ``close()``.

ElevenLabs ConvAI fits as another socket provider; the pipeline (STT → reply handler → TTS) is a
provider object composed of three clients that emits the same events.

Hot path (per 20 ms frame, both directions): no database, no channel layer, no thread hop, no
settings. Caller audio goes to the recorder's memory buffer and straight to the provider socket;
agent audio goes through the pacer to the carrier with a mark every ``mark_interval_ms``, so the
session knows what the caller has heard when a barge-in comes. Transcripts and timeline events
are written by a background task in batches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from collections import deque
from typing import Protocol

from channels.db import database_sync_to_async

from . import callsetup
from .audio.convert import Converter
from .audio.formats import AudioFormat
from .audio.pacer import PacedFrame, Pacer, PacerRunner
from .audio.recorder import CallRecorder
from .callsetup import CallContext
from .exceptions import VoiceAgentsError
from .providers.base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    ProviderErrorEvent,
    ProviderEvent,
    ToolCall,
    VoiceProvider,
)
from .transcripts import BackgroundWriter, Turn

logger = logging.getLogger(__name__)

#: Caller audio kept while the provider socket opens (Twilio streams right after ``start``).
PENDING_AUDIO_MS = 2000
#: Recording sample rate: the phone band; both carriers' audio fits it without loss of content.
RECORDING_RATE = 8000


class CarrierLink(Protocol):
    """What the session needs from a carrier's media consumer."""

    #: Format of the agent audio the carrier leg takes (and, unless ``caller_format`` differs,
    #: of the caller audio it sends).
    carrier_format: AudioFormat
    #: Format of the caller audio handed to ``CallSession.caller_audio``: the carrier's inbound
    #: format as it really arrives (Telnyx may stream another codec than the one negotiated). The
    #: session converts it once, straight to the provider's input format.
    caller_format: AudioFormat
    #: Whether the carrier echoes marks when the audio before them has played.
    has_marks: bool

    async def send_media(self, payload: str) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def send_clear(self) -> None: ...

    async def end_call(self) -> None:
        """Close the stream from our side (the carrier then hangs up)."""


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
        fmt = carrier.carrier_format
        self.frame_ms = 20
        self.pacer = Pacer(fmt, frame_ms=self.frame_ms, lead_ms=context.pacer_lead_ms)
        self.runner = PacerRunner(
            self.pacer, self._send_frame, self._send_segment_mark, on_frame=self._on_frame
        )
        self.writer = BackgroundWriter(context.call_id, self.log, settle=self._settle_turns)
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
                agent_format=fmt,
            )
        self._to_provider: Converter | None = None
        self._to_carrier: Converter | None = None
        self._ready = False
        self._pending: deque[tuple[str, bytes]] = deque()
        self._pending_ms = 0.0
        self._tasks: list[asyncio.Task] = []
        self._timer: asyncio.TimerHandle | None = None
        self._ending = False
        self.ended = asyncio.Event()
        # Agent playback bookkeeping (positions are ms in the outbound stream).
        self._current: Turn | None = None
        self._playing: deque[Turn] = deque()
        self._dropped_items: set[str] = set()
        self._out_pos = 0.0
        self._last_mark_pos = 0.0
        self._heard_pos = 0.0
        self._outstanding_marks: set[str] = set()
        self._ignored_marks: set[str] = set()
        self._speech_stopped_at: float | None = None
        self._speech_started_at: float | None = None
        self.metrics: dict = {
            "frames_in": 0,
            "frames_out": 0,
            "caller_audio_buffered_frames": 0,
            "caller_audio_dropped_frames": 0,
            "agent_audio_dropped_chunks": 0,
            "marks_sent": 0,
            "marks_acked": 0,
            "barge_ins": 0,
            "dtmf": 0,
            "provider_errors": 0,
            "response_latency_ms": [],
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the provider in the background and start the session's tasks; returns at once."""
        self.log.info(
            "session starting (provider %s, carrier %s)", self.ctx.provider_id, self.ctx.carrier
        )
        self._spawn(self._provider_loop(), "provider")
        self._spawn(self.runner.run(), "playout")
        self.writer.start()
        self._timer = self.loop.call_later(self.ctx.max_duration_s, self._on_max_duration)

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
        return self.pacer.buffered_ms(self.loop.time() if now is None else now)

    def record_event(self, kind: str, **data) -> None:
        """A timeline event at the current call time (written by the background writer)."""
        self.writer.event(kind, self.call_ms(), **data)

    def carrier_metrics(self, name: str, values: dict) -> None:
        """Attach the carrier's own counters to the call's metrics (read at the end, by reference)."""
        self.metrics[name] = values

    async def _provider_loop(self) -> None:
        try:
            started = self.loop.time()
            await self.provider.open()
            self.metrics["provider_connect_ms"] = round((self.loop.time() - started) * 1000, 1)
            self._setup_converters()
            if self.ctx.first_message:
                await self.provider.say(self.ctx.first_message)
            await self._flush_pending()
            async for event in self.provider.events():
                await self._handle(event)
        except VoiceAgentsError as err:
            self.log.warning("provider failed: %s", err)
            await self.end("provider_error", failed=True, error=str(err))
            return
        if not self._ending:
            await self.end(
                "provider_closed", failed=True, error="The provider closed the connection."
            )

    def _setup_converters(self) -> None:
        fmt = self.carrier.carrier_format
        inbound = self.carrier.caller_format
        if self.provider.input_format != inbound:
            self._to_provider = Converter(inbound, self.provider.input_format)
        if self.provider.output_format != fmt:
            self._to_carrier = Converter(self.provider.output_format, fmt)
        self.log.info(
            "provider connected in %s ms; audio in %s, out %s",
            self.metrics["provider_connect_ms"],
            "pass-through" if self._to_provider is None else self._to_provider,
            "pass-through" if self._to_carrier is None else self._to_carrier,
        )

    async def _flush_pending(self) -> None:
        # Audio keeps arriving while we flush; drain until nothing is left, then go live.
        while self._pending:
            payload, audio = self._pending.popleft()
            await self._forward(payload, audio)
        self._pending_ms = 0.0
        self._ready = True

    # -- caller → provider (hot path) ----------------------------------------------------------

    async def caller_audio(self, payload: str, audio: bytes, timestamp_ms: int | None) -> None:
        """One carrier media frame: ``payload`` is its base64 text, ``audio`` the decoded bytes."""
        self.metrics["frames_in"] += 1
        if self.recorder is not None:
            self.recorder.write_caller(audio, timestamp_ms)
        if not self._ready:
            self._buffer(payload, audio)
            return
        try:
            await self._forward(payload, audio)
        except VoiceAgentsError:
            # The provider loop sees the same failure and ends the call; don't raise into receive().
            self.metrics["caller_audio_dropped_frames"] += 1

    def _buffer(self, payload: str, audio: bytes) -> None:
        self.metrics["caller_audio_buffered_frames"] += 1
        self._pending.append((payload, audio))
        inbound = self.carrier.caller_format
        self._pending_ms += inbound.duration_ms(len(audio))
        while self._pending_ms > PENDING_AUDIO_MS and self._pending:
            _, dropped = self._pending.popleft()
            self._pending_ms -= inbound.duration_ms(len(dropped))
            self.metrics["caller_audio_dropped_frames"] += 1

    async def _forward(self, payload: str, audio: bytes) -> None:
        if self._to_provider is None:
            await self.provider.send_audio(payload)
            return
        converted = self._to_provider.convert(audio)
        if converted:
            await self.provider.send_audio(base64.b64encode(converted).decode("ascii"))

    # -- provider events -----------------------------------------------------------------------

    async def _handle(self, event: ProviderEvent) -> None:
        if isinstance(event, AgentAudio):
            await self._agent_audio(event)
        elif isinstance(event, AgentTurnStarted):
            if event.turn_id not in self.writer.turns:
                self.writer.new_turn("agent", event.turn_id)
        elif isinstance(event, AgentTranscript):
            turn = self.writer.turns.get(event.turn_id) or self.writer.new_turn(
                "agent", event.turn_id
            )
            turn.text = event.text
            turn.has_text = True
        elif isinstance(event, AgentTurnFinished):
            self._agent_turn_done(event)
        elif isinstance(event, CallerSpeechStarted):
            await self._caller_speech_started(event)
        elif isinstance(event, CallerSpeechStopped):
            self._speech_stopped_at = self.loop.time()
            turn = self.writer.turns.get(event.turn_id)
            if turn is not None and event.audio_ms is not None:
                turn.end_ms = event.audio_ms
        elif isinstance(event, CallerTranscript):
            turn = self.writer.turns.get(event.turn_id) or self.writer.new_turn(
                "caller", event.turn_id
            )
            turn.text = event.text
            turn.settled = True
        elif isinstance(event, ToolCall):
            self.writer.event("tool_call", self.call_ms(), name=event.name, call_id=event.call_id)
        elif isinstance(event, ProviderErrorEvent):
            self.metrics["provider_errors"] += 1
            self.writer.event("error", self.call_ms(), code=event.code, message=event.message)
            if event.fatal:
                await self.end(
                    "provider_error", failed=True, error=f"{event.code}: {event.message}"
                )
            else:
                self.log.warning(
                    "provider reported a recoverable error %s: %s", event.code, event.message
                )

    async def _agent_audio(self, event: AgentAudio) -> None:
        if event.turn_id in self._dropped_items:
            self.metrics["agent_audio_dropped_chunks"] += 1
            return
        turn = self._agent_turn(event.turn_id)
        try:
            data = base64.b64decode(event.payload_b64)
        except (binascii.Error, ValueError):
            self.log.warning("provider sent audio that is not base64; skipped")
            return
        if self._to_carrier is not None:
            data = self._to_carrier.convert(data)
        self.runner.push(data, wake=False)
        turn.end_pos = self._pushed_pos()
        # Audio due now (real-time speech once the lead is there) goes out from this task, one
        # scheduling round earlier than through the playout task; a burst still waits there.
        await self.runner.send_due()

    def _pushed_pos(self) -> float:
        return self.pacer.sent_ms + self.pacer.queued_ms

    def _agent_turn(self, turn_id: str) -> Turn:
        current = self._current
        if current is not None and current.turn_id == turn_id:
            return current
        if current is not None:
            # Items start on a frame boundary, so positions map cleanly to items.
            self.runner.end_segment("end")
            current.end_pos = self._pushed_pos()
        turn = self.writer.turns.get(turn_id) or self.writer.new_turn("agent", turn_id)
        turn.start_pos = turn.end_pos = self._pushed_pos()
        self._current = turn
        self._playing.append(turn)
        return turn

    def _agent_turn_done(self, event: AgentTurnFinished) -> None:
        current = self._current
        if current is not None and (not event.turn_id or current.turn_id == event.turn_id):
            if not current.interrupted:
                # Pad the last partial frame and mark the end of the reply.
                self.runner.end_segment("end")
                current.end_pos = self._pushed_pos()
            self._current = None
        if event.error:
            self.writer.event("error", self.call_ms(), turn_id=event.turn_id, message=event.error)

    # -- barge-in -------------------------------------------------------------------------------

    async def _caller_speech_started(self, event: CallerSpeechStarted) -> None:
        now = self.loop.time()
        self._speech_started_at = now
        if event.turn_id and event.turn_id not in self.writer.turns:
            self.writer.new_turn("caller", event.turn_id, start_ms=event.audio_ms)
        turn = self._playing[-1] if self._playing else None
        if turn is None or turn.interrupted:
            return
        playing = (
            self.pacer.queued_ms > 0
            or self.pacer.buffered_ms(now) > 0
            or (self.carrier.has_marks and bool(self._outstanding_marks))
            or self._current is turn
        )
        if not playing:
            return  # the agent had finished speaking: not an interruption
        await self._interrupt(turn, now)

    async def _interrupt(self, turn: Turn, now: float) -> None:
        # Measure before clearing: the clear forgets what the carrier still had buffered.
        heard = self._heard(now)
        self.runner.clear()
        await self.carrier.send_clear()
        # Marks still outstanding come back at once after a clear without having played (§2.3).
        self._ignored_marks |= self._outstanding_marks
        self._outstanding_marks.clear()
        start = turn.start_pos or 0.0
        audio_end = int(max(0.0, min(heard - start, (turn.end_pos or start) - start)))
        turn.interrupted = True
        turn.end_pos = start + audio_end
        if turn.start_ms is None:
            turn.start_ms = self.call_ms(now)
        turn.end_ms = turn.start_ms + audio_end
        turn.settled = True
        self._dropped_items.add(turn.turn_id)
        if self._current is turn:
            self._current = None
        if self.recorder is not None:
            self.recorder.clear_agent(self.call_ms(now))
        self.metrics["barge_ins"] += 1
        self.metrics.setdefault("barge_in_clear_ms", []).append(
            round((self.loop.time() - now) * 1000, 2)
        )
        self.writer.event(
            "barge_in", self.call_ms(now), turn_id=turn.turn_id, audio_end_ms=audio_end
        )
        self.log.debug("barge-in: %s heard %s ms", turn.turn_id, audio_end)
        await self._quietly(
            self.provider.interrupt(audio_end),
            "telling the provider about the barge-in",
        )

    def _heard(self, now: float) -> float:
        """Outbound-stream position the caller has heard: the pacer's estimate, bounded by marks.

        The estimate assumes the carrier plays what it gets in real time. Marks bound it: the
        caller has heard at least up to the last acknowledged mark and less than the earliest
        mark still outstanding. So marks can be sparse (every ``MARK_INTERVAL_MS``) without
        coarsening barge-in accounting, and a carrier that stalls cannot make us over-count.
        """
        estimate = self.pacer.sent_ms - self.pacer.buffered_ms(now)
        if not self.carrier.has_marks:
            return estimate
        # Mark names are our own outbound positions (see _mark_here).
        upper = min(map(float, self._outstanding_marks), default=estimate)
        return max(self._heard_pos, min(estimate, upper))

    # -- provider → carrier (hot path) ---------------------------------------------------------

    async def _send_frame(self, data: bytes) -> None:
        self._out_pos += self.frame_ms
        self.metrics["frames_out"] += 1
        await self.carrier.send_media(base64.b64encode(data).decode("ascii"))
        if (
            self.carrier.has_marks
            and self._out_pos - self._last_mark_pos >= self.ctx.mark_interval_ms
        ):
            await self._mark_here()

    async def _send_segment_mark(self, _label: str) -> None:
        if self.carrier.has_marks and self._out_pos > self._last_mark_pos:
            await self._mark_here()

    async def _mark_here(self) -> None:
        name = str(int(self._out_pos))
        self._last_mark_pos = self._out_pos
        self._outstanding_marks.add(name)
        self.metrics["marks_sent"] += 1
        await self.carrier.send_mark(name)

    def _on_frame(self, frame: PacedFrame) -> None:
        at_ms = (frame.play_at - self.t0) * 1000
        if self.recorder is not None:
            self.recorder.write_agent(frame.data, at_ms)
        if "first_agent_audio_ms" not in self.metrics:
            self.metrics["first_agent_audio_ms"] = round((self.loop.time() - self.t0) * 1000, 1)
        while self._playing and self._playing[0].interrupted:
            self._playing.popleft()
        for turn in self._playing:
            if turn.start_ms is None and (turn.start_pos or 0) <= frame.start_ms:
                turn.start_ms = int(at_ms)
                if self._speech_stopped_at is not None:
                    latency = (self.loop.time() - self._speech_stopped_at) * 1000
                    self.metrics["response_latency_ms"].append(round(latency, 1))
                    self._speech_stopped_at = None
                break

    def mark_echoed(self, name: str) -> None:
        """The carrier played everything sent before mark ``name``."""
        if name in self._ignored_marks:
            self._ignored_marks.discard(name)
            return
        if name not in self._outstanding_marks:
            return
        self._outstanding_marks.discard(name)
        self.metrics["marks_acked"] += 1
        try:
            self._heard_pos = max(self._heard_pos, float(name))
        except ValueError:
            pass

    def _settle_turns(self) -> None:
        """Agent turns are settled once fully played (or interrupted); called by the writer."""
        heard = self._heard(self.loop.time())
        for turn in self._playing:
            if turn.settled or turn.end_pos is None or turn is self._current:
                continue
            if turn.has_text and heard >= turn.end_pos:
                turn.settled = True
                if turn.start_ms is not None:
                    turn.end_ms = turn.start_ms + int(turn.end_pos - (turn.start_pos or 0))
        while self._playing and self._playing[0].settled:
            self._playing.popleft()

    # -- other carrier input ---------------------------------------------------------------------

    async def dtmf(self, digit: str) -> None:
        self.metrics["dtmf"] += 1
        self.writer.event("dtmf", self.call_ms(), digit=digit)
        if self._ready:
            try:
                await self.provider.send_dtmf(digit)
            except VoiceAgentsError as err:
                self.log.warning("cannot pass DTMF to the provider: %s", err)

    async def say(self, text: str) -> None:
        if self._ready:
            await self.provider.say(text)

    # -- the end ----------------------------------------------------------------------------------

    async def end(
        self, reason: str, *, failed: bool = False, error: str = "", by_carrier: bool = False
    ) -> None:
        """End the call: quick, idempotent, and it never loses what was already recorded."""
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        self.log.info("ending: %s%s", reason, f" ({error})" if error else "")
        try:
            if self._timer is not None:
                self._timer.cancel()
            if not by_carrier:
                await self._quietly(self.carrier.end_call(), "closing the carrier stream")
            self.runner.close()
            current = asyncio.current_task()
            others = [t for t in self._tasks if t is not current and not t.done()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._quietly(self.provider.close(), "closing the provider")
            now = self.loop.time()
            for turn in self._playing:
                if turn.end_ms is None and turn.start_ms is not None:
                    turn.end_ms = min(
                        self.call_ms(now),
                        turn.start_ms + int((turn.end_pos or 0) - (turn.start_pos or 0)),
                    )
            await self._quietly(self.writer.close(), "writing the transcript")
            recording_ms = None
            if self.recorder is not None:
                try:
                    recording_ms = self.recorder.close(self.call_ms(now)).duration_ms
                except OSError:
                    self.log.exception("cannot finalise the recording")
            await database_sync_to_async(callsetup.finish_call)(
                self.ctx.call_id,
                failed=failed,
                end_reason=reason,
                error=error,
                metrics=self._final_metrics(),
                recording_path=self.recording_path if recording_ms is not None else None,
                recording_ms=recording_ms,
            )
        except Exception:
            self.log.exception(
                "ending the call failed; finalize_call and reconcile_stale_calls will close it"
            )
        finally:
            self.ended.set()

    async def _quietly(self, coro, what: str) -> None:
        try:
            await coro
        except Exception:
            self.log.exception("%s failed", what)

    def _final_metrics(self) -> dict:
        metrics = dict(self.metrics)
        latencies = metrics.pop("response_latency_ms")
        if latencies:
            metrics["response_latency_ms"] = latencies
            metrics["response_latency_ms_avg"] = round(sum(latencies) / len(latencies), 1)
        metrics["duration_ms"] = self.call_ms()
        return metrics
