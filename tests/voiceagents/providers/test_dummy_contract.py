"""The provider contract run by ``DummyVoiceProvider``, a provider defined in test code only.

That it passes the same contract as OpenAI Realtime shows the contract (and the interface) ask
nothing vendor-specific.
"""

import pytest

from tests.voiceagents.providers.contract import *  # noqa: F403  (the contract suite runs here)
from tests.voiceagents.providers.dummy import DummyHarness, FakeDummyVendor


@pytest.fixture
async def provider_harness():
    async with FakeDummyVendor() as fake:
        yield DummyHarness(fake)
