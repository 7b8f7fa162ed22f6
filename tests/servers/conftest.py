"""Real server processes for the socket-level tests (see ``running``)."""

from pathlib import Path

import pytest

from tests.integration.conftest import pytest_runtest_makereport, start_process  # noqa: F401

from .running import SharedServer, SharedServerView

HERE = Path(__file__).parent

#: Shared servers by (kind, settings); they stop once the tests of this directory have run.
_shared: dict[tuple, SharedServer] = {}


@pytest.fixture
def shared_server(request):
    """``shared_server(kind, **settings)``: a ``SharedServerView`` of the one server process of
    ``kind`` with ``settings`` (environment variables) that every test asking for the same gets.

    For tests that only need such a server and a number and agent of their own (``view.seed``);
    a test that stops, kills or signals its server, or that needs a database of its own, starts
    its own (``start_server``). On a failed test, the server's output during it is attached.
    """
    views: list[SharedServerView] = []

    def get(kind: str, **settings: str) -> SharedServerView:
        key = (kind, tuple(sorted(settings.items())))
        server = _shared.get(key)
        if server is None:
            server = _shared[key] = SharedServer(kind, settings)
        else:
            server.restart_if_dead()
        views.append(SharedServerView(server))
        return views[-1]

    yield get
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for view in views:
            request.node.add_report_section("call", f"output of {view.name}", view.describe())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # the test's fixtures first
    if nextitem is None or HERE not in Path(nextitem.path).parents:
        while _shared:
            _shared.pop(next(iter(_shared))).stop()
    return result
