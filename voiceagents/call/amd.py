"""The answering-machine gate of an outbound call: the session's first words wait for the verdict.

The carrier reports a person or a machine seconds after the answer, through a webhook that may
land in another process; it reaches the session as the control plane's ``amd`` command (or from
the row, when it came before the session joined its group). Until then the agent does not greet
and the callee's audio is not passed to the provider (a machine's greeting would otherwise be
answered); it is still recorded. After ``timeout_s`` without a verdict the call goes on as with
a person.
"""

from __future__ import annotations

import asyncio

from ..outbound import classify

HUMAN = "human"
MACHINE = "machine"
TIMEOUT = "timeout"


class AmdGate:
    """``decide(answered_by)`` once; ``wait()`` gives ``human``, ``machine`` or ``timeout``."""

    def __init__(self, timeout_s: float, answered_by: str = ""):
        self.timeout_s = timeout_s
        self.answered_by = ""
        self._decided = asyncio.Event()
        if answered_by:
            self.decide(answered_by)

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def decide(self, answered_by: str) -> bool:
        """Take the carrier's verdict; False (ignored) when one was taken already."""
        if self.decided:
            return False
        self.answered_by = str(answered_by or "unknown")[:40]
        self._decided.set()
        return True

    @property
    def verdict(self) -> str:
        """``machine`` for a machine; ``human`` for a person or an unknown answer."""
        return MACHINE if classify(self.answered_by) == MACHINE else HUMAN

    async def wait(self) -> str:
        try:
            await asyncio.wait_for(self._decided.wait(), self.timeout_s)
        except TimeoutError:
            return TIMEOUT
        return self.verdict
