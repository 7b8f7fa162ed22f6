"""TurnTracker: agent turns placed in the outbound stream, cut on barge-in, settled once heard."""

import logging

from voiceagents.call.transcripts import BackgroundWriter
from voiceagents.call.turns import TurnTracker


def tracker() -> TurnTracker:
    return TurnTracker(BackgroundWriter("call-1", logging.getLogger(__name__)))


def test_an_interrupted_turn_keeps_only_what_was_heard_and_takes_no_more_audio():
    turns = tracker()
    turn = turns.start_audio("a1", 1000.0)
    turn.end_pos = 2500.0
    assert turns.heard_from(1000.0, 40_000)  # its first frame plays at 40 s into the call
    assert turns.last_playing() is turn
    assert turns.interrupt(turn, heard_pos=1600.0, now_ms=41_000) == 600
    assert (turn.start_ms, turn.end_ms, turn.interrupted, turn.settled) == (40_000, 40_600, 1, 1)
    assert turns.current is None and turns.last_playing() is None
    assert turns.start_audio("a1", 2500.0) is None  # late audio of the cut turn


def test_heard_is_clamped_to_the_turn():
    turns = tracker()
    turn = turns.start_audio("a1", 1000.0)
    turn.end_pos = 1200.0
    assert turns.interrupt(turn, heard_pos=5000.0, now_ms=0) == 200
    other = turns.start_audio("a2", 1200.0)
    assert turns.interrupt(other, heard_pos=900.0, now_ms=0) == 0


def test_a_turn_settles_once_heard_to_its_end_and_has_its_text():
    turns = tracker()
    turn = turns.start_audio("a1", 0.0)
    turn.end_pos = 800.0
    turns.heard_from(0.0, 5_000)
    assert turns.finishing("a1") is turn
    turns.settle(heard_pos=800.0)
    assert not turn.settled  # no transcript yet
    turns.agent_transcript("a1", "Hello.")
    turns.settle(heard_pos=700.0)
    assert not turn.settled
    turns.settle(heard_pos=800.0)
    assert turn.settled and turn.end_ms == 5_800 and not turns.playing


def test_finishing_another_turn_leaves_the_current_one_alone():
    turns = tracker()
    turns.start_audio("a2", 0.0)
    assert turns.finishing("a1") is None
    assert turns.current.turn_id == "a2"
    current = turns.current
    assert turns.finishing("") is current  # a provider that cannot tell: the one playing
    assert turns.current is None


def test_caller_turns_take_the_providers_times_and_text():
    turns = tracker()
    turns.caller_started("c1", 1200)
    turns.caller_stopped("c1", 2400)
    turns.caller_transcript("c1", "Hi.")
    turn = turns.writer.turns["c1"]
    assert (turn.role, turn.start_ms, turn.end_ms, turn.text, turn.settled) == (
        "caller",
        1200,
        2400,
        "Hi.",
        True,
    )
    turns.caller_started("", None)  # local VAD: no turn id, no turn
    assert list(turns.writer.turns) == ["c1"]
