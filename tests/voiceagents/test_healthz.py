import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_healthz_reports_ok_without_login_session_or_writes(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        response = client.get(reverse("voiceagents:healthz"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "live_calls": 0,
    }
    assert "sessionid" not in response.cookies
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_answers_503_when_the_channel_layer_is_down(client, settings, voiceagents_settings):
    voiceagents_settings["HEALTH_CHECK_TIMEOUT"] = 1.0
    # Nothing listens on port 1: every connection attempt is refused at once.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    response = client.get("/healthz/")
    assert response.status_code == 503
    assert response.json()["channel_layer"] == "down"
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_healthz_refuses_writes(client):
    assert client.post("/healthz/").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz/live", "/healthz/live/"])
def test_liveness_answers_without_any_io(client, path, django_assert_num_queries, settings):
    # A channel layer nobody answers on: liveness must not care.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    with django_assert_num_queries(0):
        response = client.get(path)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "sessionid" not in response.cookies
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz/ready", "/healthz/ready/", "/healthz/"])
def test_readiness_is_what_healthz_always_was(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "live_calls": 0,
    }
    assert client.post(path).status_code == 405


@pytest.mark.django_db
def test_readiness_says_full_at_max_calls_per_process(client, voiceagents_settings):
    from telephony import limits

    voiceagents_settings["MAX_CALLS_PER_PROCESS"] = 2
    assert limits.start_call() and limits.start_call()
    response = client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "full" and response.json()["live_calls"] == 2
    limits.end_call()
    assert client.get("/healthz/ready").status_code == 200
    assert client.get("/healthz/live").status_code == 200  # never restarted for being busy
