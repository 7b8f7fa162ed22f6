"""Managed subprocesses for the seed-example test (see tests.integration.conftest)."""

from tests.integration.conftest import pytest_runtest_makereport, start_process  # noqa: F401
