import gc
import weakref

import pytest
from django.urls import get_resolver

from voiceagents.runtime import freeze_startup_objects


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_takes_django_out_of_full_collections(unfrozen):
    tracked_before = len(gc.get_objects())

    frozen = freeze_startup_objects()

    assert frozen > 10_000 and gc.get_freeze_count() > 10_000
    assert get_resolver()._populated  # the URLconf was loaded before the freeze
    # What a full collection walks now is a small fraction of what it walked.
    assert len(gc.get_objects()) < tracked_before / 4


def test_objects_created_after_the_freeze_are_still_collected(unfrozen):
    freeze_startup_objects()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector can free it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
