"""Offline speech-to-text: PocketSphinx in the process, no network and no key.

The ``pocketsphinx`` package (the ``offline`` extra) ships an English (US) acoustic model,
dictionary and language model; it is used with its default configuration, which wants PCM16 at
16 kHz, so that is the stage's input format (the call converts the carrier's audio to it).

Like Whisper, this stage hears whole utterances: the caller's audio is cut with the voice
activity detector exactly as for Whisper (``utterances.py``: the same speech events for
barge-in, the same ``endpointing_ms``), and each utterance is decoded in one go. Decoding is
CPU-bound C code, so it runs on one dedicated worker thread shared by every call of the process,
one utterance after another; each call decodes its own utterances in order and reports a
``Transcript(final=True, end_of_turn=True)`` per utterance, or an ``UtteranceEnd`` when
PocketSphinx heard no words. See docs/stages/local.md for what to expect of its accuracy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ..audio.formats import PCM16_16K
from ..exceptions import ConfigurationError
from .base import SpeechToText, SttEvent, Transcript, UtteranceEnd
from .local_packages import require, worker
from .utterances import EventQueue, Utterance, UtteranceSegmenter, create_utterance_vad

logger = logging.getLogger(__name__)

#: The languages of the bundled model (primary subtags of the agent's language).
LANGUAGES = ("en",)
#: The rate of the bundled acoustic model.
SAMPLE_RATE = 16000

#: The thread every PocketSphinx call runs on.
_worker = worker("pocketsphinx")


class _Recognizer:
    """The process's PocketSphinx decoder; only ever touched from the worker thread."""

    def __init__(self):
        pocketsphinx = require("pocketsphinx", "pocketsphinx")
        self.decoder = pocketsphinx.Decoder(loglevel="FATAL")
        # The decoder adapts its cepstral mean to what it hears. Every utterance starts from the
        # model's initial value, so a call's result does not depend on what other calls said.
        self._initial_cmn = self.decoder.get_cmn(False)

    def decode(self, pcm: bytes) -> str:
        decoder = self.decoder
        decoder.set_cmn(self._initial_cmn)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""


_recognizer: _Recognizer | None = None


def _get_recognizer() -> _Recognizer:
    """The decoder, loaded on first use (in the worker thread)."""
    global _recognizer
    if _recognizer is None:
        _recognizer = _Recognizer()
    return _recognizer


def _decode(pcm: bytes) -> str:
    return _get_recognizer().decode(pcm)


class LocalSTT(SpeechToText):
    id = "local"
    name = "PocketSphinx"

    def __init__(self, config, context):
        super().__init__(config, context)
        self._segmenter: UtteranceSegmenter | None = None
        self._utterances: asyncio.Queue = asyncio.Queue()
        self._events = EventQueue()
        self._decoding: asyncio.Task | None = None
        self._closed = False

    async def open(self) -> None:
        if self._segmenter is not None:
            return
        language = (self.config.language or "en").split("-")[0].lower()
        if language not in LANGUAGES:
            raise ConfigurationError(
                f"The offline speech recognition only understands English, not {language!r}"
            )
        # Loading the model (on its thread) here turns a missing package into an error at the
        # start of the call rather than at the caller's first words.
        await asyncio.get_running_loop().run_in_executor(_worker, _get_recognizer)
        self.input_format = PCM16_16K
        self._segmenter = UtteranceSegmenter(
            create_utterance_vad(self.context.options, SAMPLE_RATE),
            SAMPLE_RATE,
            on_event=self._events.put_nowait,
            on_utterance=self._utterances.put_nowait,
        )
        self._decoding = asyncio.create_task(self._decode_utterances())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._decoding = self._decoding, None
        if task is not None:
            # An utterance already on the worker thread finishes there; its text is dropped.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._events.close()

    async def send_audio(self, audio: bytes) -> None:
        if self._segmenter is None or self._closed:
            return
        self._segmenter.feed(audio)

    async def _decode_utterances(self) -> None:
        """Decode the cut utterances one after the other, so results come in order."""
        loop = asyncio.get_running_loop()
        while True:
            utterance: Utterance = await self._utterances.get()
            try:
                text = await loop.run_in_executor(_worker, _decode, utterance.pcm)
            except Exception as err:  # noqa: BLE001 - a broken decoder ends the stage
                logger.exception("call %s: PocketSphinx failed", self.context.call_id)
                self._events.put_nowait(err)
                return
            if text:
                self._events.put_nowait(
                    Transcript(
                        text,
                        final=True,
                        end_of_turn=utterance.end_of_turn,
                        audio_start_ms=utterance.start_ms,
                        audio_end_ms=utterance.end_ms,
                    )
                )
            elif utterance.end_of_turn:
                self._events.put_nowait(UtteranceEnd(audio_ms=utterance.end_ms))

    def events(self) -> AsyncIterator[SttEvent]:
        return self._events.stream()
