"""Carrier legs for whole-call tests of any provider: Twilio, Telnyx PCMU and Telnyx L16.

``Line(name, harness, streams, configure, codec)``: ``await line.call(**agent_fields)`` rings the
harness's carrier, lets ``configure(agent_pk, agent_fields)`` turn the call's agent into the one
under test, opens and starts the media stream, and returns ``(call_id, caller)``. The helpers
below give audio in the leg's own format and read what the caller heard.
"""

from __future__ import annotations

import numpy as np

from voiceagents.audio.g711 import ulaw_decode, ulaw_encode


class Line:
    """One carrier leg: ``await line.call(**agent_fields)`` → ``(call_id, caller)``."""

    def __init__(self, name, harness, streams, configure, codec=""):
        self.name, self.harness, self.streams = name, harness, streams
        self.configure = configure
        self.codec = codec
        #: Bytes per ms of caller audio on the leg.
        self.bytes_per_ms = 32 if codec == "L16" else 8

    async def call(self, **agent_fields):
        from voiceagents.models import Call

        if self.codec == "L16":
            incoming = await self.harness._ring("L16")
        else:
            incoming = await self.harness.new_call()
        call = await Call.objects.aget(pk=incoming.call_id)
        await self.configure(call.agent_id, agent_fields)
        if self.codec == "L16":
            _, caller, _ = await self._start_l16(incoming)
        else:
            _, caller, _ = await self.streams.call(self.harness, incoming)
        return incoming.call_id, caller

    async def _start_l16(self, incoming):
        from tests.fakes import telnyx as fake_telnyx

        accepted, transport = await self.streams.open(self.harness, incoming)
        assert accepted
        caller = fake_telnyx.FakeTelnyxCaller(
            transport.send,
            transport.receive,
            call_control_id=incoming.carrier_call_id,
            bytes_per_ms=32,
        )
        self.streams._opened[-1] = (transport.communicator, caller)
        await caller.connected(incoming.token)
        await caller.start(incoming.extra["client_state"], encoding="L16", sample_rate=16000)
        return incoming, caller, transport

    def caller_audio(self, samples: np.ndarray) -> bytes:
        if self.codec == "L16":
            return samples.astype(">i2").tobytes()  # Telnyx L16: network byte order
        return ulaw_encode(samples.astype(np.int16))

    def heard(self, data: bytes) -> np.ndarray:
        """What the caller received, as samples."""
        if self.codec == "L16":
            return np.frombuffer(data[: len(data) // 2 * 2], dtype=">i2").astype(np.float64)
        return ulaw_decode(bytes(data)).astype(np.float64)

    @property
    def rate(self) -> int:
        return 16000 if self.codec == "L16" else 8000
