"""``Patter``, its STT/TTS factories and ``agent()``, with the seed document's parameters and defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voiceagents.providers import providers
from voiceagents.providers.stages import stt_stages, tts_stages


@dataclass(frozen=True)
class STT:
    """A speech-to-text stage: ``Patter.deepgram()`` or ``Patter.whisper()``."""

    provider: str
    api_key: str = field(repr=False)
    language: str = "en"


@dataclass(frozen=True)
class TTS:
    """A text-to-speech stage: ``Patter.elevenlabs()`` or ``Patter.openai_tts()``."""

    provider: str
    api_key: str = field(repr=False)
    voice: str = "rachel"


@dataclass(frozen=True)
class AgentConfig:
    """What ``phone.agent(...)`` returns: everything a call needs to know about the agent."""

    system_prompt: str
    provider: str = "openai_realtime"
    model: str = ""
    voice: str = ""
    first_message: str = ""
    language: str = "en"
    variables: dict[str, Any] = field(default_factory=dict)
    stt: STT | None = None
    tts: TTS | None = None


def _require_key(api_key: str, factory: str) -> str:
    if not api_key:
        raise ValueError(f"Patter.{factory}() needs api_key")
    return api_key


class Patter:
    """Holds the carrier and provider keys of one account (the seed's "local mode")."""

    def __init__(
        self,
        *,
        twilio_sid: str = "",
        twilio_token: str = "",
        telnyx_key: str = "",
        phone_number: str = "",
        webhook_url: str = "",
        openai_key: str = "",
        elevenlabs_key: str = "",
        deepgram_key: str = "",
    ):
        self.twilio_sid = twilio_sid
        self.twilio_token = twilio_token
        self.telnyx_key = telnyx_key
        self.phone_number = phone_number
        self.webhook_url = webhook_url
        self.openai_key = openai_key
        self.elevenlabs_key = elevenlabs_key
        self.deepgram_key = deepgram_key

    def _key_of(self, vendor: str) -> str:
        """The constructor's key of ``vendor`` (``openai_key`` for 'openai'), '' when none."""
        return getattr(self, f"{vendor}_key", "")

    def __repr__(self):
        return f"Patter(phone_number={self.phone_number!r}, webhook_url={self.webhook_url!r})"

    # -- factories (seed: "STT Providers", "TTS Providers") ---------------------------------

    # The stage ids are the pipeline registries' own; the default voices are their specs'
    # ("rachel" for ElevenLabs, "alloy" for OpenAI TTS, as the seed documents).

    @staticmethod
    def deepgram(api_key: str, language: str = "en") -> STT:
        return STT(stt_stages.get("deepgram").id, _require_key(api_key, "deepgram"), language)

    @staticmethod
    def whisper(api_key: str, language: str = "en") -> STT:
        return STT(stt_stages.get("whisper").id, _require_key(api_key, "whisper"), language)

    @staticmethod
    def elevenlabs(api_key: str, voice: str = "") -> TTS:
        spec = tts_stages.get("elevenlabs")
        return TTS(spec.id, _require_key(api_key, "elevenlabs"), voice or spec.default_voice)

    @staticmethod
    def openai_tts(api_key: str, voice: str = "") -> TTS:
        spec = tts_stages.get("openai_tts")
        return TTS(spec.id, _require_key(api_key, "openai_tts"), voice or spec.default_voice)

    # -- agents ----------------------------------------------------------------------------

    def agent(
        self,
        system_prompt: str,
        provider: str = "openai_realtime",
        model: str | None = None,
        voice: str | None = None,
        *,
        first_message: str = "",
        language: str = "en",
        variables: dict[str, Any] | None = None,
        stt: STT | None = None,
        tts: TTS | None = None,
    ) -> AgentConfig:
        """Build an agent with the defaults and requirements of the provider's registry spec."""
        if provider not in providers:
            known = ", ".join(spec.id for spec in providers)
            raise ValueError(f"provider must be one of {known}, not {provider!r}")
        spec = providers.get(provider)
        if spec.vendor and not self._key_of(spec.vendor):
            raise ValueError(f"provider={provider!r} needs {spec.vendor}_key in Patter(...)")
        model = model or spec.default_model
        voice = voice or spec.default_voice
        if spec.stages:
            # Seed: without explicit stt/tts, fall back to the constructor's Deepgram and
            # ElevenLabs keys.
            if stt is None and self.deepgram_key:
                stt = self.deepgram(self.deepgram_key, language=language)
            if tts is None and self.elevenlabs_key:
                tts = self.elevenlabs(self.elevenlabs_key)
            missing = [name for name, stage in (("stt", stt), ("tts", tts)) if stage is None]
            if missing:
                raise ValueError(
                    "provider='pipeline' needs "
                    + " and ".join(missing)
                    + " (pass stt=Patter.deepgram(...)/tts=Patter.elevenlabs(...), or "
                    "deepgram_key/elevenlabs_key in Patter(...))"
                )
        return AgentConfig(
            system_prompt=system_prompt,
            provider=provider,
            model=model or "",
            voice=voice or "",
            first_message=first_message,
            language=language,
            variables=dict(variables or {}),
            stt=stt,
            tts=tts,
        )

    # -- serving calls ---------------------------------------------------------------------

    async def serve(
        self,
        agent: AgentConfig,
        on_message: Callable[..., Any] | None = None,
        port: int = 8000,
        *,
        host: str = "127.0.0.1",
        log_level: str = "info",
    ) -> None:
        """Answer calls to ``phone_number`` with ``agent`` until the server stops.

        Runs the project's web app (admin, carrier webhooks, media streams) under uvicorn on
        ``host:port`` in the current event loop. Before that it sets Django up (unless the
        process has settings already: see ``patter.settings``), migrates the database, and
        stores the carrier and provider keys as credentials, the agent, and the number with the
        agent answering it; later starts update those rows. ``on_message`` is the pipeline's
        reply handler: called with the event dict (``event["text"]`` is what the caller said),
        it returns (or yields) the text to speak. ``host`` is loopback by default: a tunnel
        such as ngrok forwards ``webhook_url`` to it. Ctrl-C (or SIGTERM) shuts the server
        down gracefully, then uvicorn passes the signal on (``asyncio.run`` raises the usual
        ``KeyboardInterrupt``); cancelling the task stops the server too.
        """
        from .server import serve

        await serve(self, agent, on_message, host=host, port=port, log_level=log_level)

    async def call(self, to: str, agent: AgentConfig | None = None, **options: Any) -> None:
        """Not part of the script API yet: it raises rather than pretend to dial.

        Outbound calls exist (``voiceagents.outbound.place_call``, the admin's "Call a number",
        ``manage.py voiceagents_call_number``, docs/outbound.md); a script's agents are not yet
        rows they can be placed for.
        """
        raise NotImplementedError(
            f"phone.call(to={to!r}): outbound calls are not supported from a script yet; place "
            "them with voiceagents.outbound.place_call, the admin's 'Call a number' or "
            "`manage.py voiceagents_call_number` (docs/outbound.md)"
        )
