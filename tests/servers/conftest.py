"""Real server processes for the socket-level tests (see ``running``)."""

from tests.integration.conftest import pytest_runtest_makereport, start_process  # noqa: F401
