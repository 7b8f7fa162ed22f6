"""Offline text-to-speech: eSpeak NG in the process, no network and no key.

The ``espeakng-loader`` package (the ``offline`` extra) ships the eSpeak NG library and its
voice data, so no system package is needed. We bind its C API with ctypes: the library is set up
once per process in synchronous mode, where ``espeak_Synth`` blocks and hands the audio to a
callback as it is produced (PCM16 mono at 22050 Hz, in buffers of ``_BUFFER_MS``); the call's
audio core resamples that to the carrier's rate.

The library keeps global state (voice, rate, the callback) and is not thread-safe, so every
synthesis of every call runs on one dedicated worker thread, one text after the other, never on
the event loop. eSpeak speaks many times faster than real time, so a sentence waits little.
The callback passes each buffer to the event loop as it comes; closing the stream (a barge-in)
makes the callback stop the synthesis at its next buffer. See docs/stages/local.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator

from ..audio.formats import AudioFormat, Encoding
from ..exceptions import ConfigurationError, ProviderAPIError, ProviderConnectionError
from .base import TextToSpeech
from .local_packages import require, worker

DEFAULT_VOICE = "en"
#: Length of the buffers eSpeak hands to the callback: each is one chunk of the stream.
_BUFFER_MS = 100
# From espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETER = {"rate": 1, "volume": 2, "pitch": 3}
#: eSpeak's own defaults, set again before each text: another agent may have changed them.
_DEFAULT_PARAMETERS = {"rate": 175, "volume": 100, "pitch": 50}

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

#: The thread every eSpeak call runs on.
_worker = worker("espeak")


class _Job:
    """One text being spoken: where its audio goes, and whether its listener has gone."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop = loop
        self.queue = queue
        self.cancelled = threading.Event()

    def put(self, item) -> bool:
        """Pass ``item`` to the event loop; False when nobody listens any more."""
        if self.cancelled.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the call is over
            self.cancelled.set()
            return False
        return True


class _Engine:
    """The process's eSpeak NG library; only ever touched from the worker thread."""

    def __init__(self):
        loader = require("espeakng_loader", "espeakng-loader")
        try:
            lib = ctypes.CDLL(loader.get_library_path())
            data_path = loader.get_data_path()
        except (OSError, RuntimeError) as err:
            raise ConfigurationError(f"eSpeak NG could not be loaded: {err}") from err
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        # DONT_EXIT: on a fatal error the library returns instead of ending the process.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise ConfigurationError(f"eSpeak NG did not start (data in {data_path})")
        self.lib = lib
        self.sample_rate = rate
        self.job: _Job | None = None
        # Kept on the engine: ctypes must not free the callback while the library holds it.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, samples: int, _events) -> int:
        """eSpeak's callback: 0 goes on, 1 stops the synthesis."""
        job = self.job
        if job is None or job.cancelled.is_set():
            return 1
        if samples > 0 and not job.put(ctypes.string_at(wav, samples * 2)):
            return 1
        return 0

    def set_voice(self, voice: str) -> bool:
        return self.lib.espeak_SetVoiceByName(voice.encode()) == 0

    def speak(self, job: _Job, text: str, voice: str, parameters: dict[str, int]) -> None:
        if job.cancelled.is_set():
            return
        if not self.set_voice(voice):
            raise ProviderAPIError(f"eSpeak NG has no voice {voice!r}")
        for name, value in {**_DEFAULT_PARAMETERS, **parameters}.items():
            self.lib.espeak_SetParameter(_PARAMETER[name], value, 0)
        data = text.encode() + b"\0"
        self.job = job
        try:
            self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self.job = None


_engine: _Engine | None = None


def _get_engine() -> _Engine:
    """The engine, started on first use (in the worker thread)."""
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def _check_voice(voice: str) -> int:
    engine = _get_engine()
    if not engine.set_voice(voice):
        raise ProviderAPIError(f"eSpeak NG has no voice {voice!r}")
    return engine.sample_rate


def _speak(job: _Job, text: str, voice: str, parameters: dict[str, int]) -> None:
    """The worker's side of one text: its audio, then ``None``, or the error, to the queue."""
    try:
        _get_engine().speak(job, text, voice, parameters)
    except BaseException as err:  # noqa: BLE001 - handed to the event loop, raised there
        job.put(err)
    else:
        job.put(None)


class LocalTTS(TextToSpeech):
    id = "local"
    name = "eSpeak NG"

    def __init__(self, config, context):
        super().__init__(config, context)
        self._closed = False

    @property
    def voice(self) -> str:
        """The agent's voice, else the language's primary subtag ("en" of "en-GB")."""
        language = (self.config.language or "").split("-")[0].lower()
        return self.config.voice or language or DEFAULT_VOICE

    def parameters(self) -> dict[str, int]:
        """``tts_options`` eSpeak understands: ``rate`` (words a minute, 175 by default),
        ``pitch`` and ``volume`` (0-100, 50 and 100 by default)."""
        options = self.context.options.get("tts_options") or {}
        return {name: int(options[name]) for name in _PARAMETER if name in options}

    async def open(self) -> None:
        # Starting the library (on its thread) here turns a missing package or voice into an
        # error at the start of the call rather than at the first sentence.
        loop = asyncio.get_running_loop()
        rate = await loop.run_in_executor(_worker, _check_voice, self.voice)
        self.output_format = AudioFormat(Encoding.PCM16, rate)

    async def close(self) -> None:
        self._closed = True

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 at eSpeak's rate for ``text``, in chunks of about 100 ms as they are made."""
        if self._closed:
            raise ProviderConnectionError(
                f"{self.name} is closed", vendor=self.id, call_id=self.context.call_id
            )
        if self.output_format is None:
            await self.open()
        text = text.strip()
        if not text:
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        job = _Job(loop, queue)
        loop.run_in_executor(_worker, _speak, job, text, self.voice, self.parameters())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, ProviderAPIError):
                        item.call_id = self.context.call_id
                    raise item
                yield item
        finally:
            # Closed early (a barge-in) or done: either way eSpeak stops at its next buffer.
            job.cancelled.set()
