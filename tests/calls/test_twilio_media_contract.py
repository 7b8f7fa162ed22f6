"""The media-consumer contract (tests/telephony/media_cases.py) for Twilio."""

import pytest

from tests.telephony.media_cases import *  # noqa: F403  (the contract suite runs here)


@pytest.fixture
def media_harness(twilio_harness):
    return twilio_harness
