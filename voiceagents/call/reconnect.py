"""Keeping a call's provider: reconnects after a drop, renewals before a vendor's time limit.

When the provider's socket drops mid-call (an abnormal close or a network error: anything
``events()`` raises as ``ProviderConnectionError``; a close the vendor makes to end the
conversation is not a drop), ``ProviderKeeper.recover`` puts a new provider of the same kind in
its place:

- the caller hears a short comfort tone (``RECONNECT_FILLER_MS``, after whatever agent audio was
  already queued) instead of dead air;
- caller audio is held meanwhile, as while the first connection opens (the last
  ``PENDING_AUDIO_MS`` at most, oldest dropped), and sent to the new provider once it is open;
- the new provider is given the conversation so far as text (``VoiceProvider.restore``): the
  instructions are its configuration, the past turns are the transcript's;
- once open, the agent says ``RECONNECT_LINE``.

Each drop, and each reopening that fails, is a failure; at ``PROVIDER_MAX_FAILURES`` the call
ends as failed with the reason ``provider_lost`` (which hangs up through the carrier, like every
ending). A reopening may take ``PROVIDER_RECONNECT_TIMEOUT`` seconds.

A provider whose vendor limits a session's length (``capabilities.max_session_s``: OpenAI
Realtime) is renewed the same way, silently, once the limit is near and the agent has finished
a turn: the new session is opened while the old one still runs, then they are swapped.

Nothing here runs per audio frame: the session only asks ``renewal_due`` when a turn finishes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..audio.convert import Converter
from ..audio.formats import PCM16_8K
from ..conf import get_setting
from ..exceptions import VoiceAgentsError
from ..providers.base import AgentTurnFinished, PastTurn, ProviderEvent, VoiceProvider

#: The comfort tone: soft beeps of this pitch, on and off by turns (a "please hold" pattern).
FILLER_HZ = 440.0
FILLER_BEEP_MS = 150
FILLER_AMPLITUDE = 2000


class ProviderKeeper:
    def __init__(self, session):
        self.session = session
        self.max_failures = int(get_setting("PROVIDER_MAX_FAILURES", cast=int))
        self.timeout = float(get_setting("PROVIDER_RECONNECT_TIMEOUT", cast=float))
        self.filler_ms = int(get_setting("RECONNECT_FILLER_MS", cast=int))
        self.resume_line = str(get_setting("RECONNECT_LINE") or "")
        self.failures = 0
        self.reconnects = 0
        self.renewals = 0
        #: Loop time at which the current provider was opened.
        self.opened_at = session.loop.time()

    def opened(self) -> None:
        """The session's first provider is open."""
        self.opened_at = self.session.loop.time()

    def history(self) -> tuple[PastTurn, ...]:
        """The conversation so far, as the transcript has it (in order, turns with text)."""
        turns = sorted(self.session.writer.turns.values(), key=lambda turn: turn.seq)
        return tuple(PastTurn(turn.role, turn.text) for turn in turns if turn.text.strip())

    # -- drops ------------------------------------------------------------------------------------

    async def recover(self, error: Exception) -> bool:
        """The provider dropped: reopen it (True), or end the call as ``provider_lost`` (False)."""
        session = self.session
        self.failures += 1
        session.log.warning(
            "provider connection lost (%s of %s): %s", self.failures, self.max_failures, error
        )
        session.record_event("provider_lost", attempt=self.failures, message=str(error))
        # Caller audio waits (bounded) for the new provider; the agent turn that was being
        # received ends where its audio stops.
        session.inbound.ready = False
        if session.turns.current is not None:
            session.turns.end_current(session.playback.end_segment())
        await self._play_filler()
        old = session.provider
        while self.failures < self.max_failures:
            try:
                new = await self._reopen(old, resume_line=self.resume_line)
            except VoiceAgentsError as err:
                self.failures += 1
                error = err
                session.log.warning("reconnecting to the provider failed: %s", err)
                continue
            self.reconnects += 1
            session.record_event("provider_reconnected", attempt=self.failures)
            # Closing a dead socket may take its close timeout: after the new one is live.
            session._spawn(self._close(old), "lost-provider")
            await self._go_live(new)
            return True
        await self._close(old)
        await session.end("provider_lost", failed=True, error=str(error))
        return False

    # -- renewals ---------------------------------------------------------------------------------

    def renewal_due(self, event: ProviderEvent) -> bool:
        """After a finished agent turn: whether the provider's session is near its end."""
        if not isinstance(event, AgentTurnFinished):
            return False
        limit = self.session.provider.capabilities.max_session_s
        return limit is not None and self.session.loop.time() - self.opened_at >= limit

    async def renew(self) -> None:
        """Open a new session with the conversation so far, then swap it in (raises
        ``ProviderConnectionError`` if it cannot be opened: a failure like a drop)."""
        session = self.session
        old = session.provider
        new = await self._reopen(old, resume_line="")
        self.renewals += 1
        session.log.info(
            "provider session renewed after %.0f s", session.loop.time() - self.opened_at
        )
        session.record_event("provider_renewed")
        session.inbound.ready = False
        try:
            await self._go_live(new)
        finally:
            await session._quietly(old.close(), "closing the renewed provider")

    # -- both ---------------------------------------------------------------------------------

    async def _reopen(self, old: VoiceProvider, *, resume_line: str) -> VoiceProvider:
        generation = self.reconnects + self.renewals + 1
        new = type(old)(replace(old.config, connect_timeout=self.timeout))
        new.usage = old.usage  # what the call used so far stays counted
        new.restore(self.history(), resume_line=resume_line, turn_prefix=f"r{generation}.")
        try:
            await new.open()
        except BaseException:
            await self.session._quietly(new.close(), "closing a provider that did not open")
            raise
        return new

    async def _go_live(self, new: VoiceProvider) -> None:
        session = self.session
        session.provider = new
        self.opened_at = session.loop.time()
        session.metrics.carrier["provider_reconnects"] = self.reconnects
        session.metrics.carrier["provider_renewals"] = self.renewals
        inbound = session.inbound
        inbound.convert = None
        inbound.connect(new.send_audio, new.input_format)
        session.playback.convert = None
        session.playback.source_format(new.output_format)
        if new.resume_line and not new.capabilities.speaks_first_message:
            await new.say(new.resume_line)
        await inbound.flush()

    async def _close(self, provider: VoiceProvider) -> None:
        await self.session._quietly(provider.close(), "closing the lost provider")

    async def _play_filler(self) -> None:
        if self.filler_ms <= 0:
            return
        playback = self.session.playback
        playback.push(comfort_tone(self.filler_ms, self.session.carrier.carrier_format))
        playback.end_segment()
        await playback.send_due()


def comfort_tone(ms: int, fmt) -> bytes:
    """``ms`` of soft beeps in ``fmt`` (the carrier's format)."""
    samples = np.arange(ms * 8) / 8000.0
    tone = FILLER_AMPLITUDE * np.sin(2 * np.pi * FILLER_HZ * samples)
    beeping = (np.arange(ms * 8) // (FILLER_BEEP_MS * 8)) % 2 == 0
    pcm = (tone * beeping).astype("<i2").tobytes()
    if fmt == PCM16_8K:
        return pcm
    return Converter(PCM16_8K, fmt).convert(pcm)
