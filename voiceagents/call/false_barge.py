"""Was that barge-in the caller, or a noise? (false interruptions)

The barge-in itself cannot wait: the carrier's ``clear`` leaves within milliseconds of the speech
start, and the provider is told what was heard at once, so that its conversation is right at
every moment. What follows is decided here, afterwards, from the evidence the provider gives:

- words (a non-empty caller transcript) at any time in the window: a real interruption;
- the caller's speech stopped (or the provider's final transcript of the last caller turn came)
  and the transcript is empty: noise (a cough, a door, a burst on the line) - a *false*
  interruption;
- the window (``FALSE_INTERRUPTION_WINDOW_MS``) ends with the speech stopped, still no words and
  the provider not answering anything: false too. With the caller still talking, or the
  provider answering a turn whose transcript has not come: real, as far as we can tell (the
  session does nothing more than it did before; noise that lasts that long is the provider's
  turn taking's to deal with).

Transcripts of caller turns that began before the barge-in are not evidence about it.

On a false one the session asks the provider to pick the interrupted turn up again
(``VoiceProvider.resume``) unless the agent has meanwhile started to say something else. Nothing
here runs per audio frame: only on the provider's speech and transcript events.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Verdicts.
REAL = "real"
FALSE = "false"


@dataclass
class PendingBarge:
    """A barge-in not decided yet."""

    #: The agent turn that was cut, and how much of it the caller heard (ms).
    turn_id: str
    heard_ms: int
    #: Loop time of the barge-in.
    at: float
    #: The caller is (as far as the provider said) still making the sound that cut in.
    speaking: bool = True
    #: The provider began an agent turn since (its answer to what it heard).
    answering: bool = False
    #: Caller turn ids (the provider's) heard since the barge-in; '' when it gives none.
    caller_turns: set[str] | None = None
    #: The caller turn that began last ('' unknown): its final transcript ends it.
    latest_turn: str = ""


class FalseBargeWatch:
    """Follows the last barge-in until it is found real or false (one at a time)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.pending: PendingBarge | None = None

    def begin(self, turn_id: str, heard_ms: int, now: float, caller_turn: str = "") -> None:
        self.pending = PendingBarge(
            turn_id, heard_ms, now, caller_turns={caller_turn}, latest_turn=caller_turn
        )

    def deadline(self) -> float | None:
        return None if self.pending is None else self.pending.at + self.window_s

    def speech_started(self, caller_turn: str = "") -> None:
        if self.pending is not None:
            self.pending.speaking = True
            self.pending.caller_turns.add(caller_turn)
            self.pending.latest_turn = caller_turn

    def agent_started(self) -> None:
        if self.pending is not None:
            self.pending.answering = True

    def speech_stopped(self) -> None:
        if self.pending is not None:
            self.pending.speaking = False

    def transcript(self, text: str, caller_turn: str = "") -> str | None:
        """A caller transcript arrived: the verdict it gives, if any."""
        if self.pending is None:
            return None
        if caller_turn and "" not in self.pending.caller_turns:
            if caller_turn not in self.pending.caller_turns:
                return None  # a turn from before the barge-in
        if text.strip():
            return REAL
        if not self.pending.speaking:
            return FALSE
        if caller_turn and caller_turn == self.pending.latest_turn:
            # The final transcript of the last caller turn (ElevenLabs reports no speech stop:
            # its transcript ends the turn): no words in it.
            return FALSE
        return None

    def expired(self) -> str | None:
        """The window is over: the verdict, if still undecided."""
        if self.pending is None:
            return None
        return REAL if self.pending.speaking or self.pending.answering else FALSE

    def take(self) -> PendingBarge | None:
        """The decided barge-in, forgotten here."""
        pending, self.pending = self.pending, None
        return pending
