"""The pipeline provider: speech-to-text → reply (``on_message``) → text-to-speech, for one call.

Composed of one stage of each kind (``voiceagents.pipeline``), chosen on the agent and built from
their specs' runtimes. It speaks the session's neutral vocabulary like the speech-to-speech
providers do, so the call core treats it the same way (docs/providers/pipeline.md):

- **Caller turns.** The STT's final spans are collected until it says the turn is over
  (``Transcript.end_of_turn`` or ``UtteranceEnd``); the turn becomes a ``CallerTranscript`` (and a
  ``CallerSpeechStopped``, for the session's latency metrics) and the reply starts.
- **Replies.** One task per reply: the reply stage (an LLM prompt or a registered handler) streams
  text, cut into sentences as it comes; each sentence is synthesized while the next is still being
  written, and its audio becomes ``AgentAudio`` of the reply's turn. A reply that fails, or gives
  no text within ``reply_timeout`` seconds, is logged and replaced by a short apology; the call
  goes on.
- **Barge-in, confirmed.** A speech start from the STT interrupts nothing by itself (a cough, a
  breath, the agent's own echo): the caller's speech counts once it has words (an interim or final
  transcript) or, with an STT that runs its own voice detector, once it has gone on without a
  pause (``SpeechSustained``). Then ``CallerSpeechStarted`` goes to the session, which clears the
  carrier and calls ``interrupt(heard_ms)``: the reply's LLM and TTS requests are cancelled, and
  its text is cut to the sentences the caller heard (``AgentTranscript(corrected=True)``), which is
  also what the reply handler's history shows, marked interrupted. If the utterance then ends
  with no final words (a noise taken for a word at first), ``CallerSpeechStopped`` says so and,
  on the session's ``resume``, the cut reply is spoken again from the sentence that was cut.
- **Before any audio.** If the caller speaks again while the reply is still being written, that
  reply is dropped unsaid and the next one answers both parts of what they said.
- DTMF reaches ``on_message`` as ``{"type": "dtmf", "digit": ...}``; ``say(text)`` (the first
  message, an operator's "Say") speaks text without the reply stage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string

from ..exceptions import ProviderAPIError, ProviderConnectionError, VoiceAgentsError
from ..pipeline.base import (
    ReplyGenerator,
    SpeechEnded,
    SpeechStarted,
    SpeechSustained,
    SpeechToText,
    StageContext,
    TextToSpeech,
    Transcript,
    UtteranceEnd,
)
from ..pipeline.sentences import SentenceSplitter
from .base import (
    AgentAudio,
    AgentTranscript,
    AgentTurnFinished,
    AgentTurnStarted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    CallerTranscript,
    ProviderCapabilities,
    ProviderErrorEvent,
    ProviderEvent,
    StageConfig,
    ToolCall,
    VoiceProvider,
)
from .stages import STAGES

logger = logging.getLogger(__name__)

#: A sentence's likely duration while its audio is still arriving (about 14 characters a second).
SPOKEN_MS_PER_CHAR = 70.0
#: Seconds the reply stage may take to produce its first text (the ``reply_timeout`` option).
DEFAULT_REPLY_TIMEOUT = 8.0
#: The longest a reply waits for the session to answer one of its tool calls (the session
#: answers every call within the tool's timeout; this only guards against a lost answer).
TOOL_ANSWER_TIMEOUT = 60.0
#: Said when the reply stage fails or times out (the ``apology`` option).
DEFAULT_APOLOGY = "Sorry, I had a problem with that. Could you say it again?"
#: The registered-handler adapter (the reply stage of an agent with a ``reply_handler``).
HANDLER_REPLY = "voiceagents.pipeline.handlers.HandlerReply"


@dataclass
class _Reply:
    """One agent turn being produced: its text so far and where each sentence's audio lies."""

    turn_id: str
    task: asyncio.Task | None = None
    #: [sentence, audio start ms, audio end ms, complete] in the turn's own audio; the end of a
    #: sentence still being synthesized is its audio so far.
    sentences: list[list] = field(default_factory=list)
    audio_ms: float = 0.0
    started_audio: bool = False
    done: bool = False
    #: The caller text it answers (kept if it is dropped unsaid, for the next reply).
    answers: str = ""
    #: Where its entry goes in the history (replies are ordered by when they began).
    history_at: int = 0
    history_entry: dict | None = None
    # Timings (loop time, s) for the per-turn metrics.
    asked_at: float | None = None
    first_text_at: float | None = None
    first_audio_at: float | None = None

    def text(self) -> str:
        return " ".join(sentence for sentence, *_ in self.sentences)

    def unheard_text(self, heard_ms: float) -> str:
        """The sentences the caller did not hear to their end: the one cut, and those after."""
        return " ".join(
            sentence for sentence, start, end, complete in self.sentences if end > heard_ms
        )

    def heard_text(self, heard_ms: float) -> str:
        """The sentences the caller heard, the last one cut at the word reached (by its share
        of the sentence's audio; for a sentence still being synthesized, of its likely length)."""
        heard = []
        for sentence, start, end, complete in self.sentences:
            if not complete:
                end = max(end, start + len(sentence) * SPOKEN_MS_PER_CHAR)
            if start >= heard_ms:
                break
            if end <= heard_ms or end <= start:
                heard.append(sentence)
                continue
            words = sentence.split()
            kept = int(len(words) * (heard_ms - start) / (end - start))
            if kept:
                heard.append(" ".join(words[:kept]))
            break
        return " ".join(heard)


class PipelineProvider(VoiceProvider):
    id = "pipeline"
    name = "Pipeline"
    # The reply to a caller turn starts here once the STT says the turn is over; after a barge-in
    # the history holds only what was heard.
    capabilities = ProviderCapabilities(server_turn_detection=True, truncation=True)

    def __init__(self, config):
        super().__init__(config)
        context = StageContext(
            call_id=config.call_id,
            carrier_format=config.carrier_format,
            connect_timeout=config.connect_timeout,
            http_timeout=config.http_timeout,
            options=config.options,
        )
        self.stt: SpeechToText = _stage("stt", config.stages["stt"], context)
        self.replier: ReplyGenerator = _stage("reply", config.stages["reply"], context)
        self.tts: TextToSpeech = _stage("tts", config.stages["tts"], context)
        # An LLM reply stage offers the agent's tools; the session runs them (ToolCall events).
        self.replier.tools = config.tools
        self.replier.run_tool = self._run_tool
        self._tool_waiters: dict[str, asyncio.Future[str]] = {}
        options = config.options
        self.reply_timeout = float(options.get("reply_timeout", DEFAULT_REPLY_TIMEOUT))
        #: With the ``interruptions`` option off, the caller cannot cut the agent off.
        self.interruptions = bool(options.get("interruptions", True))
        self.apology = str(options.get("apology", DEFAULT_APOLOGY))
        self._events: asyncio.Queue[ProviderEvent | BaseException | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        #: What the reply stage sees as ``history``: {"role", "text", "interrupted"}.
        self.history: list[dict[str, Any]] = []
        self._replies = 0
        self._reply: _Reply | None = None
        #: The reply a barge-in would cut: the one speaking, or the last one that spoke.
        self._audible: _Reply | None = None
        #: The reply a barge-in cut and how much of it was heard, until the caller says
        #: something (``resume`` picks it up again after a false interruption).
        self._cut: tuple[_Reply, int] | None = None
        # The caller's turn in progress.
        self._caller_turns = 0
        self._caller_turn = ""
        self._finals: list[str] = []
        self._speech_at: int | None = None
        self._confirmed = False
        #: Clear from a confirmed caller speech until the session has handled it (and called
        #: ``interrupt`` if the agent was audible): a reply asked meanwhile waits, so that its
        #: history shows the interruption.
        self._barge_in_settled = asyncio.Event()
        self._barge_in_settled.set()
        #: Caller text a dropped reply never answered: prefixed to the next turn.
        self._unanswered = ""
        # Audio sent to the STT (ms) and the wall clock, to place STT audio times in real time.
        self._sent_ms = 0.0
        self.turn_metrics: list[dict[str, float]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        opened: list = []
        failing = None
        try:
            for failing in (self.stt, self.replier, self.tts):
                await failing.open()
                opened.append(failing)
        except BaseException as err:
            for stage in opened:
                await stage.close()
            if isinstance(err, ProviderAPIError):
                # A refusal at connection time (a wrong key): the call cannot start.
                raise ProviderConnectionError(
                    f"{failing.name or failing.id} refused the connection: "
                    f"{err.args[0] if err.args else err}",
                    vendor=failing.id,
                    call_id=self.config.call_id,
                    status_code=err.status_code,
                    response=err.response,
                ) from err
            raise
        self.input_format = self.stt.input_format
        self.output_format = self.tts.output_format
        self._spawn(self._listen(), "stt")

    def restore(self, history, *, resume_line: str = "", turn_prefix: str = "") -> None:
        """Reopened mid-call: the reply stage's history starts with the conversation so far."""
        super().restore(history, resume_line=resume_line, turn_prefix=turn_prefix)
        self.history = [
            {"role": turn.role, "text": turn.text, "interrupted": False} for turn in history
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Streaming speech-to-text is billed by the seconds of audio sent (for Whisper, which is
        # sent only the utterances, this is an upper bound). Counted once, here.
        stt = self.config.stages["stt"]
        self.usage.add(f"stt:{stt.id}", stt.model, {"audio_seconds": self._sent_ms / 1000})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stage in (self.stt, self.replier, self.tts):
            try:
                await stage.close()
            except Exception:  # noqa: BLE001 - closing must not fail the call's ending
                logger.exception(
                    "call %s: closing the %s stage failed", self.config.call_id, stage.id
                )
        self._events.put_nowait(None)

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(f"call-{self.config.call_id}-pipeline-{name}")
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._events.put_nowait(error)

    def _emit(self, event: ProviderEvent) -> None:
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[ProviderEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, VoiceAgentsError):
                    raise item
                raise ProviderConnectionError(
                    f"the pipeline failed: {item!r}", vendor=self.id, call_id=self.config.call_id
                ) from item
            yield item
            if isinstance(item, CallerSpeechStarted):
                # The session has handled it: interrupted the agent, or found nothing playing.
                self._barge_in_settled.set()

    # -- caller audio (hot path) ------------------------------------------------------------------

    async def send_audio(self, payload_b64: str) -> None:
        audio = base64.b64decode(payload_b64)
        self._sent_ms += self.input_format.duration_ms(len(audio))
        await self.stt.send_audio(audio)

    # -- listening ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        async for event in self.stt.events():
            if isinstance(event, SpeechStarted):
                self._speech_started(event)
            elif isinstance(event, SpeechSustained):
                self._confirm()
            elif isinstance(event, SpeechEnded):
                self._speech_ended()
            elif isinstance(event, Transcript):
                self._transcript(event)
            elif isinstance(event, UtteranceEnd):
                if self._finals:
                    self._end_caller_turn(event.audio_ms)
                else:
                    self._wordless_end(event.audio_ms)
        if not self._closed:
            raise ProviderConnectionError(
                f"{self.stt.name or self.stt.id} stopped transcribing",
                vendor=self.id,
                call_id=self.config.call_id,
            )

    def _new_caller_turn(self) -> None:
        if not self._caller_turn:
            self._caller_turns += 1
            self._caller_turn = f"{self.turn_prefix}c{self._caller_turns}"

    def _speech_started(self, event: SpeechStarted) -> None:
        """A speech onset: nothing is interrupted until it is confirmed (words, or speech that
        goes on: ``SpeechSustained``)."""
        self._new_caller_turn()
        if self._speech_at is None:
            self._speech_at = event.audio_ms

    def _speech_ended(self) -> None:
        """Speech ended: unconfirmed (a cough), nothing happened; confirmed, the next speech
        must be confirmed again (its words, if any, may still be on their way)."""
        self._confirmed = False
        if not self._finals:
            self._speech_at = None

    def _wordless_end(self, audio_end_ms: int | None) -> None:
        """The STT ended the utterance with no final words. If its interim words had barged in
        (a noise taken for a word at first), say that the caller stopped: the session then finds
        the barge-in false and asks us to ``resume``."""
        if self._confirmed and self._caller_turn:
            self._emit(CallerSpeechStopped(self._caller_turn, audio_end_ms))
            self._caller_turn = ""
        self._speech_ended()

    def _transcript(self, event: Transcript) -> None:
        text = event.text.strip()
        if not text:
            return
        self._new_caller_turn()
        if self._speech_at is None:
            self._speech_at = event.audio_start_ms
        self._confirm()  # words: the caller is really talking
        if event.final:
            self._finals.append(text)
            if event.end_of_turn:
                self._end_caller_turn(event.audio_end_ms)

    def _confirm(self) -> None:
        """The caller is speaking for real: the session may barge in; a reply not yet audible
        is dropped (the next one answers everything they said)."""
        if self._confirmed:
            return
        self._confirmed = True
        self._new_caller_turn()
        reply = self._reply
        if reply is not None and not reply.started_audio and reply.task is not None:
            reply.task.cancel()
            self._reply = None
            if reply.answers:
                # Answered together with what the caller says now (one history entry for both).
                self._unanswered = reply.answers
                entry = {"role": "caller", "text": reply.answers, "interrupted": False}
                if entry in self.history:
                    self.history.remove(entry)
        audible = self._audible
        if not self.interruptions and audible is not None and not audible.done:
            return  # the agent is speaking and may not be cut off
        self._barge_in_settled.clear()
        self._emit(CallerSpeechStarted(self._caller_turn, self._speech_at))

    def _end_caller_turn(self, audio_end_ms: int | None) -> None:
        text = " ".join(self._finals)
        turn = self._caller_turn
        self._finals = []
        self._cut = None  # the caller said something: the cut reply is not picked up again
        self._caller_turn = ""
        self._confirmed = False
        self._speech_at = None
        if not text:
            return
        self._emit(CallerTranscript(turn, text))
        self._emit(CallerSpeechStopped(turn, audio_end_ms))
        asked = " ".join(p for p in (self._unanswered, text) if p)
        self._unanswered = ""
        entry = {"role": "caller", "text": asked, "interrupted": False}
        self.history.append(entry)
        now = asyncio.get_running_loop().time()
        # When the caller's speech ended, in loop time: the STT reports it in audio time.
        lag = max(0.0, (self._sent_ms - audio_end_ms) / 1000) if audio_end_ms is not None else 0.0
        self._start_reply(
            {"type": "message", "text": asked},
            answers=asked,
            asked_at=now,
            speech_end=now - lag,
            turn_entry=entry,
        )

    # -- replying -------------------------------------------------------------------------------

    def _event(self, fields: Mapping[str, Any], turn_entry: dict | None) -> dict[str, Any]:
        """The ``on_message`` event; its ``history`` is the conversation before this turn (the
        turn itself is ``text``), read when the reply starts so it shows a barge-in just made."""
        variables = self.config.variables
        return {
            "text": "",
            **fields,
            "call_id": self.config.call_id,
            "caller": variables.get("caller_number", ""),
            "callee": variables.get("called_number", ""),
            "agent": self.config.agent,
            "history": [dict(entry) for entry in self.history if entry is not turn_entry],
            "language": self.config.language,
        }

    def _start_reply(
        self,
        fields: Mapping[str, Any] | None,
        *,
        text: str = "",
        answers: str = "",
        asked_at: float | None = None,
        speech_end: float | None = None,
        turn_entry: dict | None = None,
    ) -> None:
        """A new agent turn: the reply stage's answer to ``fields``, or ``text`` as it is.

        A reply still being written and not yet heard is superseded; one the caller is hearing
        (DTMF or an operator's "say" during it) plays to its end before this one speaks.
        """
        previous = self._reply
        after = None
        if previous is not None and previous.task is not None and not previous.done:
            if previous.started_audio:
                after = previous.task
            else:
                previous.task.cancel()
        self._replies += 1
        reply = _Reply(
            f"{self.turn_prefix}p{self._replies}",
            answers=answers,
            asked_at=asked_at,
            history_at=len(self.history),
        )
        self._reply = reply
        source = self._generated(fields, turn_entry) if fields is not None else _once(text)
        reply.task = self._spawn(self._speak(reply, source, speech_end, after), reply.turn_id)

    async def _generated(
        self, fields: Mapping[str, Any], turn_entry: dict | None
    ) -> AsyncIterator[str]:
        """The reply stage's text, or the apology when it fails or is too slow to start."""
        await self._barge_in_settled.wait()
        stream = self.replier.reply(self._event(fields, turn_entry))
        try:
            try:
                first = await asyncio.wait_for(anext(stream), self.reply_timeout)
            except StopAsyncIteration:
                return
            yield first
            async for piece in stream:
                yield piece
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            logger.warning(
                "call %s: the reply took more than %ss to start; apologising",
                self.config.call_id,
                self.reply_timeout,
            )
            yield self.apology
        except Exception as err:  # noqa: BLE001 - a reply that fails must not end the call
            logger.exception("call %s: the reply failed; apologising", self.config.call_id)
            self._emit(ProviderErrorEvent(f"the reply failed: {err}", code="reply_failed"))
            yield self.apology
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
            self._count_reply_usage()

    def _count_reply_usage(self) -> None:
        usage, self.replier.last_usage = self.replier.last_usage, None
        if usage:
            reply = self.config.stages["reply"]
            self.usage.add(
                f"reply:{reply.id}",
                reply.model,
                {
                    "input_tokens": usage.get("prompt_tokens"),
                    "output_tokens": usage.get("completion_tokens"),
                },
            )

    async def _speak(
        self, reply: _Reply, source: AsyncIterator[str], speech_end, after: asyncio.Task | None
    ) -> None:
        """Sentences from ``source`` → TTS → agent audio, the next sentence synthesized while
        the first one's audio is still arriving (after the reply ``after`` has finished)."""
        loop = asyncio.get_running_loop()
        splitter = SentenceSplitter()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()

        async def write() -> None:
            try:
                async for piece in source:
                    if reply.first_text_at is None:
                        reply.first_text_at = loop.time()
                    for sentence in splitter.feed(piece):
                        sentences.put_nowait(sentence)
                rest = splitter.flush().strip()
                if rest:
                    sentences.put_nowait(rest)
            finally:
                sentences.put_nowait(None)

        writer = asyncio.ensure_future(write())
        tts_first_byte = None
        try:
            if after is not None:
                await asyncio.gather(after, return_exceptions=True)
            while (sentence := await sentences.get()) is not None:
                entry = [sentence, reply.audio_ms, reply.audio_ms, False]
                reply.sentences.append(entry)
                tts = self.config.stages["tts"]
                self.usage.add(f"tts:{tts.id}", tts.model, {"characters": len(sentence)})
                requested = loop.time()
                async for audio in self.tts.synthesize(sentence):
                    if not audio:
                        continue
                    if tts_first_byte is None:
                        tts_first_byte = loop.time() - requested
                    if not reply.started_audio:
                        reply.started_audio = True
                        reply.first_audio_at = loop.time()
                        self._audible = reply
                        self._emit(AgentTurnStarted(reply.turn_id))
                        await self.stt.agent_speaking(True)
                    reply.audio_ms += self.output_format.duration_ms(len(audio))
                    entry[2] = reply.audio_ms
                    self._emit(AgentAudio(reply.turn_id, base64.b64encode(audio).decode("ascii")))
                entry[3] = True
            await writer  # its error, if any
        finally:
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        reply.done = True
        reply.sentences = [entry for entry in reply.sentences if entry[2] > entry[1]]
        if reply.sentences:
            self._emit(AgentTranscript(reply.turn_id, reply.text()))
            reply.history_entry = {"role": "agent", "text": reply.text(), "interrupted": False}
            self.history.insert(min(reply.history_at, len(self.history)), reply.history_entry)
        self._emit(AgentTurnFinished(reply.turn_id))
        await self.stt.agent_speaking(False)
        self._record_metrics(reply, speech_end, tts_first_byte)

    def _record_metrics(self, reply: _Reply, speech_end, tts_first_byte) -> None:
        if reply.asked_at is None:
            return
        entry: dict[str, float] = {}
        if speech_end is not None:
            entry["transcript_ms"] = round((reply.asked_at - speech_end) * 1000, 1)
        if reply.first_text_at is not None:
            entry["reply_first_text_ms"] = round((reply.first_text_at - reply.asked_at) * 1000, 1)
        if tts_first_byte is not None:
            entry["tts_first_byte_ms"] = round(tts_first_byte * 1000, 1)
        if reply.first_audio_at is not None and speech_end is not None:
            entry["first_audio_ms"] = round((reply.first_audio_at - speech_end) * 1000, 1)
        self.turn_metrics.append(entry)

    # -- what the session asks --------------------------------------------------------------------

    async def say(self, text: str) -> None:
        self._start_reply(None, text=text)

    async def interrupt(self, heard_ms: int) -> None:
        """The caller cut in after ``heard_ms`` of the reply that was playing: stop writing and
        synthesizing it, and keep only what they heard."""
        reply = self._audible
        if reply is None:
            return
        self._audible = None
        if reply.task is not None and not reply.done:
            reply.task.cancel()
            await asyncio.gather(reply.task, return_exceptions=True)
        if self._reply is reply:
            self._reply = None
        heard = reply.heard_text(heard_ms)
        if reply.history_entry is not None:  # it had finished sending: in the history in full
            reply.history_entry.update(text=heard, interrupted=True)
        else:
            reply.history_entry = {"role": "agent", "text": heard, "interrupted": True}
            self.history.insert(min(reply.history_at, len(self.history)), reply.history_entry)
        self._emit(AgentTranscript(reply.turn_id, heard, corrected=True))
        self._cut = (reply, heard_ms)
        if not reply.done:
            self._emit(AgentTurnFinished(reply.turn_id, cancelled=True))
            await self.stt.agent_speaking(False)

    async def resume(self) -> bool:
        """A noise cut the agent off: say the interrupted reply again from the sentence that was
        cut (what had been written of it; its LLM request was cancelled), as a new turn."""
        cut, self._cut = self._cut, None
        if cut is None or (self._reply is not None and not self._reply.done):
            return False  # nothing cut, or the agent is already on another reply
        reply, heard_ms = cut
        rest = reply.unheard_text(heard_ms)
        if not rest:
            return False
        self._start_reply(None, text=rest)
        return True

    async def send_dtmf(self, digit: str) -> None:
        self._start_reply(
            {"type": "dtmf", "digit": digit}, asked_at=asyncio.get_running_loop().time()
        )

    async def _run_tool(self, call_id: str, name: str, arguments: str) -> str:
        """The reply stage's model called a tool: the session runs it and answers with
        ``tool_result``, which this waits for (every tool call is answered, failures included)."""
        future = asyncio.get_running_loop().create_future()
        self._tool_waiters[call_id] = future
        self._emit(ToolCall(call_id, name, arguments))
        try:
            return await asyncio.wait_for(future, TOOL_ANSWER_TIMEOUT)
        except TimeoutError:
            logger.error("call %s: the tool %s was never answered", self.config.call_id, name)
            return "Error: the tool did not answer."
        finally:
            self._tool_waiters.pop(call_id, None)

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        future = self._tool_waiters.get(call_id)
        if future is None or future.done():
            # The reply that asked was cut off by the caller meanwhile: nobody waits any more.
            logger.debug(
                "call %s: tool result %s after its reply ended", self.config.call_id, call_id
            )
            return
        future.set_result(f"Error: {output}" if is_error else output)

    def report(self) -> dict[str, Any]:
        """Per-turn timings, for the call's metrics."""
        return {"pipeline_turns": list(self.turn_metrics)} if self.turn_metrics else {}


def _stage(kind: str, config: StageConfig, context: StageContext):
    if kind == "reply" and config.handler:
        runtime = HANDLER_REPLY
    else:
        spec = STAGES[kind].find(config.id)
        if spec is None or not spec.runtime:
            raise ProviderConnectionError(
                f"the {kind} service {config.id!r} cannot take calls yet", vendor="pipeline"
            )
        runtime = spec.runtime
    return import_string(runtime)(config, context)


async def _once(text: str) -> AsyncIterator[str]:
    yield text
