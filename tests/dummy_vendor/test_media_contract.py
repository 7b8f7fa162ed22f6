"""The media-consumer contract (tests/telephony/media_cases.py) for a carrier made up here."""

import pytest

from tests.telephony.media_cases import *  # noqa: F403  (the contract suite runs here)


@pytest.fixture
def media_harness(dummy_harness):
    return dummy_harness
