"""The conversation's turns, by the provider's neutral turn ids.

Agent turns are placed in the outbound stream (``Turn.start_pos``/``end_pos``, ms, see
``playback``) so that a barge-in can say how much of the turn the caller heard, and so that a
turn is settled (written with its final times) once it has fully played. Caller turns take the
times the provider reports. Turns live in the call's ``BackgroundWriter``, which writes them.
"""

from __future__ import annotations

from collections import deque

from .transcripts import BackgroundWriter, Turn


class TurnTracker:
    def __init__(self, writer: BackgroundWriter):
        self.writer = writer
        #: The agent turn receiving audio now.
        self.current: Turn | None = None
        #: Agent turns whose audio was queued and that are not settled yet, oldest first.
        self.playing: deque[Turn] = deque()
        #: Agent turns cut off by a barge-in: audio that still arrives for them is dropped.
        self.interrupted: set[str] = set()

    def _turn(self, role: str, turn_id: str, **fields) -> Turn:
        return self.writer.turns.get(turn_id) or self.writer.new_turn(role, turn_id, **fields)

    # -- agent ---------------------------------------------------------------------------------

    def agent_started(self, turn_id: str) -> None:
        self._turn("agent", turn_id)

    def agent_transcript(self, turn_id: str, text: str, *, corrected: bool = False) -> None:
        turn = self._turn("agent", turn_id)
        turn.text = text
        turn.has_text = True
        if corrected:
            # What was really said before the caller cut in: the turn was interrupted even if
            # the barge-in reached us after its audio had all been sent.
            turn.interrupted = True
            self.interrupted.add(turn_id)
            # Written already, or being written with the old text: write it (again).
            self.writer.rewrite(turn)

    def end_current(self, pos: float) -> None:
        """The current turn's audio ends at stream position ``pos``."""
        if self.current is not None:
            self.current.end_pos = pos
            self.current = None

    def start_audio(self, turn_id: str, pos: float) -> Turn | None:
        """The first audio of ``turn_id``, at ``pos`` (end the current turn first); ``None`` if
        that turn was interrupted."""
        if turn_id in self.interrupted:
            return None
        turn = self._turn("agent", turn_id)
        turn.start_pos = turn.end_pos = pos
        self.current = turn
        self.playing.append(turn)
        return turn

    def finishing(self, turn_id: str) -> Turn | None:
        """The provider finished ``turn_id`` (empty: the one receiving audio): the current turn
        if that is the one and it still plays to its end, else ``None``. It stops being current."""
        current = self.current
        if current is None or (turn_id and current.turn_id != turn_id):
            return None
        self.current = None
        return None if current.interrupted else current

    def last_playing(self) -> Turn | None:
        """The agent turn a barge-in would cut, unless it already was."""
        turn = self.playing[-1] if self.playing else None
        return None if turn is None or turn.interrupted else turn

    def interrupt(self, turn: Turn, heard_pos: float, now_ms: int) -> int:
        """Cut ``turn`` where the caller stopped hearing it; returns the ms of it heard."""
        start = turn.start_pos or 0.0
        heard = int(max(0.0, min(heard_pos - start, (turn.end_pos or start) - start)))
        turn.interrupted = True
        turn.end_pos = start + heard
        if turn.start_ms is None:
            turn.start_ms = now_ms
        turn.end_ms = turn.start_ms + heard
        turn.settled = True
        self.interrupted.add(turn.turn_id)
        if self.current is turn:
            self.current = None
        return heard

    def heard_from(self, pos: float, at_ms: int) -> bool:
        """A frame at stream position ``pos`` plays at call time ``at_ms`` (every frame): True if
        it is the first of an agent turn."""
        playing = self.playing
        while playing and playing[0].interrupted:
            playing.popleft()
        for turn in playing:
            if turn.start_ms is None and (turn.start_pos or 0) <= pos:
                turn.start_ms = at_ms
                return True
        return False

    def settle(self, heard_pos: float) -> None:
        """Settle the agent turns the caller has heard to their end (and that have their text)."""
        for turn in self.playing:
            if turn.settled or turn.end_pos is None or turn is self.current:
                continue
            if turn.has_text and heard_pos >= turn.end_pos:
                turn.settled = True
                if turn.start_ms is not None:
                    turn.end_ms = turn.start_ms + int(turn.end_pos - (turn.start_pos or 0))
        while self.playing and self.playing[0].settled:
            self.playing.popleft()

    def close(self, now_ms: int) -> None:
        """The call ends: turns still playing end now, or when their audio would have."""
        for turn in self.playing:
            if turn.end_ms is None and turn.start_ms is not None:
                turn.end_ms = min(
                    now_ms, turn.start_ms + int((turn.end_pos or 0) - (turn.start_pos or 0))
                )

    # -- caller --------------------------------------------------------------------------------

    def caller_started(self, turn_id: str, audio_ms: int | None) -> None:
        if turn_id and turn_id not in self.writer.turns:
            self.writer.new_turn("caller", turn_id, start_ms=audio_ms)

    def caller_stopped(self, turn_id: str, audio_ms: int | None) -> None:
        turn = self.writer.turns.get(turn_id)
        if turn is not None and audio_ms is not None:
            turn.end_ms = audio_ms

    def caller_transcript(self, turn_id: str, text: str) -> None:
        turn = self._turn("caller", turn_id)
        turn.text = text
        turn.settled = True
