"""Sentence splitting of streamed replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceagents.pipeline.sentences import SentenceSplitter


def split(text: str, min_chars: int = 0) -> list[str]:
    """All sentences of ``text`` fed in one piece, then flushed."""
    splitter = SentenceSplitter(min_chars=min_chars)
    out = splitter.feed(text)
    rest = splitter.flush()
    return out + ([rest] if rest else [])


def split_chunks(chunks: list[str], min_chars: int = 0) -> list[str]:
    splitter = SentenceSplitter(min_chars=min_chars)
    out = [sentence for chunk in chunks for sentence in splitter.feed(chunk)]
    rest = splitter.flush()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Really? Yes! Great.", ["Really?", "Yes!", "Great."]),
        ("Wait?! No way.", ["Wait?!", "No way."]),
        ("Well… I think so.", ["Well…", "I think so."]),
        ("Well... I think so.", ["Well...", "I think so."]),
        ('He said "hi." Then he left.', ['He said "hi."', "Then he left."]),
        ("(That is all.) Goodbye.", ["(That is all.)", "Goodbye."]),
        ("First line\nSecond line", ["First line", "Second line"]),
        ("One.\n\nTwo.", ["One.", "Two."]),
        # Abbreviations.
        ("Mr. Smith will call. Bye.", ["Mr. Smith will call.", "Bye."]),
        ("Ask Dr. Jones or Mrs. Lee.", ["Ask Dr. Jones or Mrs. Lee."]),
        ("We sell fruit, e.g. apples. Fresh ones.", ["We sell fruit, e.g. apples.", "Fresh ones."]),
        ("Vegetables, i.e. carrots, etc. are fine.", ["Vegetables, i.e. carrots, etc. are fine."]),
        ("It is on Baker St. near the park.", ["It is on Baker St. near the park."]),
        # Initials.
        ("J. R. R. Tolkien wrote it. Read it.", ["J. R. R. Tolkien wrote it.", "Read it."]),
        ("The U.S. office is closed.", ["The U.S. office is closed."]),
        # Numbers.
        ("It costs 3.5 dollars. Okay?", ["It costs 3.5 dollars.", "Okay?"]),
        ("We open at 10.30 sharp. See you.", ["We open at 10.30 sharp.", "See you."]),
        ("That is $4.99. Anything else?", ["That is $4.99.", "Anything else?"]),
        ("I counted 3. Then I stopped.", ["I counted 3.", "Then I stopped."]),
        ("1. Open the app\n2. Tap book", ["1. Open the app", "2. Tap book"]),
        ("Visit example.com today.", ["Visit example.com today."]),
        # No end yet: everything comes out at flush.
        ("No punctuation at all", ["No punctuation at all"]),
        ("Trailing stop.", ["Trailing stop."]),
        ("  Spaces around.   ", ["Spaces around."]),
        ("", []),
    ],
)
def test_sentences(text, sentences):
    assert split(text) == sentences


def test_a_sentence_waits_for_what_follows_its_full_stop():
    splitter = SentenceSplitter(min_chars=0)
    assert splitter.feed("It costs 3.") == []  # 3. or 3.5?
    assert splitter.feed("5 dollars.") == []
    assert splitter.feed(" Bye") == ["It costs 3.5 dollars."]
    assert splitter.flush() == "Bye"


def test_an_abbreviation_split_across_pieces():
    splitter = SentenceSplitter(min_chars=0)
    assert splitter.feed("Call Dr") == []
    assert splitter.feed(".") == []
    assert splitter.feed(" Who tomorrow. ") == ["Call Dr. Who tomorrow."]


def test_the_first_sentence_goes_out_as_soon_as_it_is_complete():
    splitter = SentenceSplitter()  # default merging of short fragments
    assert splitter.feed("Sure") == []
    assert splitter.feed(". ") == ["Sure."]  # short, but the caller is waiting for it


def test_short_sentences_after_the_first_are_joined_to_the_next():
    splitter = SentenceSplitter()
    assert splitter.feed("Hello. ") == ["Hello."]
    assert splitter.feed("Yes. ") == []
    assert splitter.feed("We have a table at eight. ") == ["Yes. We have a table at eight."]
    assert splitter.feed("Ok? ") == []
    assert splitter.flush() == "Ok?"


def test_a_short_first_sentence_takes_the_sentences_already_complete():
    splitter = SentenceSplitter()
    assert splitter.feed("Yes. We have a table at eight. And") == ["Yes. We have a table at eight."]
    assert splitter.flush() == "And"


def test_flush_resets_for_a_new_reply():
    splitter = SentenceSplitter()
    assert splitter.feed("First reply. Then") == ["First reply."]
    assert splitter.flush() == "Then"
    assert splitter.feed("Hi. ") == ["Hi."]  # a new reply's first sentence is not held


# -- properties ---------------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "hello",
        "Mr.",
        "Dr.",
        "e.g.",
        "etc.",
        "J.",
        "U.S.",
        "3.5",
        "10.30",
        "4.",
        "yes.",
        "no?",
        "wow!",
        "so…",
        "hmm...",
        '"quoted."',
        "(aside.)",
        "caf\u00e9",
        "1.",
        "example.com",
        "the",
        "table",
    ]
)
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", " \n "])


@st.composite
def replies(draw):
    words = draw(st.lists(WORDS, max_size=30))
    seps = draw(st.lists(SEPARATORS, min_size=len(words), max_size=len(words)))
    return "".join(word + sep for word, sep in zip(words, seps, strict=True)).strip()


@st.composite
def chunked(draw):
    """A reply and the pieces it streams in."""
    text = draw(replies())
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@given(chunked(), st.sampled_from([0, 20, 40]))
def test_no_word_is_lost_or_broken(case, min_chars):
    text, chunks = case
    sentences = split_chunks(chunks, min_chars)
    assert " ".join(sentences).split() == text.split()
    assert all(sentence and sentence == sentence.strip() for sentence in sentences)


@given(chunked())
def test_without_merging_the_pieces_do_not_matter(case):
    text, chunks = case
    assert split_chunks(chunks) == split(text)


@given(chunked(), st.sampled_from([10, 20, 40]))
def test_only_the_first_and_the_rest_may_be_short(case, min_chars):
    _text, chunks = case
    splitter = SentenceSplitter(min_chars=min_chars)
    fed = [sentence for chunk in chunks for sentence in splitter.feed(chunk)]
    assert all(len(sentence) >= min_chars for sentence in fed[1:])


@given(replies())
def test_the_first_sentence_is_not_held_back(text):
    """Whatever the first sentence is, it comes out of the feed that completes it."""
    first = split(text)[:1]
    if not first or first[0] == text:
        return
    splitter = SentenceSplitter()
    # Feed up to where the second sentence starts: the whitespace that ends the first included.
    end = len(first[0])
    while text[end].isspace():
        end += 1
    assert splitter.feed(text[:end]) == first
