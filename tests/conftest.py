import threading

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# Hypothesis' per-example deadline (200 ms) and its "too slow" health check are timing assertions:
# on a busy machine (the suite under `nice` beside a CPU-heavy process) they fail correct code.
hypothesis_settings.register_profile(
    "voiceagents", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("voiceagents")


@pytest.fixture
def voiceagents_settings(settings):
    """Edit VOICEAGENTS for one test: ``voiceagents_settings["KEY"] = value``."""
    settings.VOICEAGENTS = dict(settings.VOICEAGENTS)
    return settings.VOICEAGENTS


@pytest.fixture
def recordings_dir(tmp_path, voiceagents_settings):
    """Calls record their temporary WAV files under the test's own directory."""
    voiceagents_settings["RECORDING_TMP_DIR"] = str(tmp_path)
    return tmp_path


@pytest.fixture
async def media_streams():
    """Media streams opened through a carrier harness (tests/calls/harness.py), closed after."""
    from tests.calls.harness import Streams

    opened = Streams()
    yield opened
    await opened.aclose()


@pytest.fixture
def browser_settings(settings):
    """live_server speaks plain http: cookies marked Secure would never come back."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return settings


@pytest.fixture
def asgi_server(transactional_db, browser_settings):
    """The project's ASGI routes (static files included) under uvicorn, in a thread: its URL.

    It runs in this process, so it shares the test database and the handlers a test registers;
    unlike ``live_server`` it serves the WebSocket routes (media streams, the live monitor).
    """
    uvicorn = pytest.importorskip("uvicorn", reason="the uvicorn package is absent")
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from telephony.routing import websocket_urlpatterns
    from tests.integration.conftest import free_port

    application = ProtocolTypeRouter(
        {
            "http": ASGIStaticFilesHandler(get_asgi_application()),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, and before it drops the test database: the database thread
    (``voiceagents.dbthread``) gives back the connection it keeps, which would hold the database
    open (PostgreSQL refuses to drop a database in use)."""
    yield
    from voiceagents import dbthread

    dbthread.close_kept_connections()


@pytest.fixture(autouse=True)
def fresh_abuse_limits():
    """Each test starts with empty per-IP and per-process counts (``telephony.limits``)."""
    from telephony import limits

    limits.reset()
    yield
    limits.reset()


@pytest.fixture(autouse=True)
def fresh_config_cache():
    """Each test starts with an empty configuration cache (``voiceagents.configcache``): the rows
    a test's transaction rolls back fire no signal, and the next test reuses their ids."""
    from voiceagents import configcache

    configcache.clear()
    yield
    configcache.clear()


@pytest.fixture
def eager_celery():
    """Celery tasks run in this process, as under the demo's eager settings, even in the
    integration run (its REDIS_URL configures a real broker that no worker reads; the real
    worker's tests are in tests/integration)."""
    from celery import current_app

    conf = current_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved
