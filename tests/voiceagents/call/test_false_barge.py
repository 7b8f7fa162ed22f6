"""The verdict on a barge-in: words make it real, a noise with no words makes it false."""

from voiceagents.call.false_barge import FALSE, REAL, FalseBargeWatch


def watch():
    w = FalseBargeWatch(2.0)
    w.begin("item_1", 700, now=10.0)
    return w


def test_words_make_it_real_even_before_the_speech_stops():
    w = watch()
    assert w.transcript("Wait") == REAL


def test_an_empty_transcript_after_the_speech_stopped_makes_it_false():
    w = watch()
    w.speech_stopped()
    assert w.transcript("  ") == FALSE
    assert w.take().heard_ms == 700
    assert w.pending is None


def test_an_empty_transcript_while_still_speaking_decides_nothing():
    w = watch()
    assert w.transcript("") is None
    w.speech_stopped()
    w.speech_started()  # more sound: still undecided
    assert w.transcript("") is None


def test_at_the_end_of_the_window():
    w = watch()
    assert w.deadline() == 12.0
    assert w.expired() == REAL  # still talking after 2 s: not a noise
    w.speech_stopped()
    assert w.expired() == FALSE  # stopped, and no words came


def test_nothing_pending():
    w = FalseBargeWatch(2.0)
    assert w.transcript("") is None
    assert w.expired() is None
    assert w.deadline() is None
    assert w.take() is None


def test_no_transcript_but_the_provider_answering_is_taken_as_real():
    w = watch()
    w.speech_stopped()
    w.agent_started()
    assert w.expired() == REAL


def test_transcripts_of_turns_from_before_the_barge_in_are_not_evidence():
    w = FalseBargeWatch(2.0)
    w.begin("item_1", 700, now=10.0, caller_turn="item_9")
    w.speech_stopped()
    assert w.transcript("", "item_3") is None  # a late transcript of an earlier turn
    w.speech_started("item_11")
    assert w.transcript("Hello", "item_11") == REAL


def test_the_final_transcript_of_the_last_caller_turn_ends_it():
    """ElevenLabs reports no speech stop: its (empty) transcript of the turn ends it."""
    w = FalseBargeWatch(2.0)
    w.begin("a1", 700, now=10.0, caller_turn="c1")
    assert w.transcript("", "c1") == FALSE
