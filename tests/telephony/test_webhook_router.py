"""``CarrierWebhookRouter``: carrier webhooks answered without the site's middlewares, exactly as
Django's whole request handling answers them; every other request still goes through Django.

Each request is sent through the router and through Django's own ASGI handler (httpx's ASGI
transport, in this process) and the answers compared. Requests are signed with the twilio SDK.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.http import HttpResponse
from django.urls import include, path

from telephony.asgi import CarrierWebhookRouter, webhook_match
from telephony.carriers.twilio.webhooks import TwilioVoiceWebhookView
from tests.fakes import twilio as fake
from voiceagents.models import Call, PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

VOICE = "/telephony/twilio/voice/"
STATUS = "/telephony/twilio/status/"
FORM = "application/x-www-form-urlencoded"

#: Paths the counting middleware saw (tests/telephony/test_webhook_router.py's ``Counting``).
SEEN: list[str] = []


class Counting:
    """A site middleware: records every request it sees."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        SEEN.append(request.path)
        return self.get_response(request)


class ExplodingVoiceView(TwilioVoiceWebhookView):
    """A webhook view whose work raises: Django's 500 and its ``django.request`` log line."""

    async def post(self, request, *args, **kwargs):
        raise RuntimeError("the view failed")


urlpatterns = [
    path("telephony/", include("telephony.urls")),
    path("broken/voice/", ExplodingVoiceView.as_view()),
    path("plain/", lambda request: HttpResponse("plain")),
]


@pytest.fixture
def counting(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.Counting"]
    SEEN.clear()
    yield SEEN
    SEEN.clear()


@pytest.fixture
def twilio_number(twilio_credential, agent):
    return PhoneNumber.objects.create(
        number=fake.OUR_NUMBER, carrier="twilio", credential=twilio_credential, agent=agent
    )


def clients():
    """``(router, django)``: the same Django app with and without the router in front."""
    django_app = get_asgi_application()
    router = CarrierWebhookRouter(django_app)

    def client(app):
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://voice.example.test"
        )

    return client(router), client(django_app)


def signed(path: str, params: dict, token: str = fake.AUTH_TOKEN) -> dict:
    return {
        "content": urlencode(params),
        "headers": {
            "content-type": FORM,
            "x-twilio-signature": fake.sign(fake.PUBLIC_URL + path, params, token),
        },
    }


async def both(method: str, path: str, make_request=lambda: {}):
    """The answer of each app to the same request (``make_request`` builds a fresh one)."""
    router, django = clients()
    async with router, django:
        return (
            await router.request(method, path, **make_request()),
            await django.request(method, path, **make_request()),
        )


async def test_a_voice_webhook_is_answered_as_django_answers_it_without_the_middlewares(
    twilio_number, counting
):
    direct, through_django = await both("POST", VOICE, lambda: signed(VOICE, fake.voice_params()))
    for response in (direct, through_django):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        assert b"<Stream" in response.content
    assert counting == [VOICE], "the router's request reached the site's middleware"
    assert await Call.objects.acount() == 2


@pytest.mark.parametrize(
    ("name", "make_request", "status"),
    [
        ("forged", lambda: signed(VOICE, fake.voice_params(), fake.OTHER_AUTH_TOKEN), 403),
        ("unsigned", lambda: {"content": urlencode(fake.voice_params())}, 403),
        ("unknown number", lambda: signed(VOICE, fake.voice_params(To="+15550001111")), 200),
    ],
)
async def test_refusals_are_the_same_on_both_paths(
    twilio_number, counting, name, make_request, status
):
    direct, through_django = await both("POST", VOICE, make_request)
    assert direct.status_code == through_django.status_code == status, name
    assert direct.content == through_django.content
    assert direct.headers["content-type"] == through_django.headers["content-type"]
    assert counting == [VOICE]


async def test_a_status_callback_and_a_head_probe_take_the_direct_path(twilio_number, counting):
    call_sid = fake.new_sid("CA")
    params = fake.status_params(call_sid, "completed", 3, CallDuration="7")
    direct, through_django = await both("POST", STATUS, lambda: signed(STATUS, params))
    assert direct.status_code == through_django.status_code == 204
    head, head_django = await both("HEAD", VOICE)
    assert head.status_code == head_django.status_code == 200
    assert counting == [STATUS, VOICE]


async def test_other_methods_and_paths_go_through_django(twilio_number, counting):
    get_voice, _ = await both("GET", VOICE)
    assert get_voice.status_code == 405
    health, _ = await both("GET", "/healthz/")
    assert health.status_code in (200, 503)
    missing, _ = await both("POST", "/telephony/twilio/nowhere/")
    assert missing.status_code == 404
    assert counting == [VOICE, VOICE, "/healthz/", "/healthz/"] + ["/telephony/twilio/nowhere/"] * 2


async def test_the_webhook_rate_limit_holds_on_the_direct_path(twilio_number, voiceagents_settings):
    voiceagents_settings["WEBHOOK_RATE_PER_IP"] = 2
    router, _ = clients()
    async with router:
        answers = [
            (await router.post(VOICE, **signed(VOICE, fake.voice_params()))).status_code
            for _ in range(3)
        ]
    assert answers == [200, 200, 429]


async def test_a_body_over_djangos_limit_is_refused_with_400(twilio_number, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    params = fake.voice_params(Padding="x" * 500)
    direct, through_django = await both("POST", VOICE, lambda: signed(VOICE, params))
    assert direct.status_code == through_django.status_code == 400


async def test_an_exception_in_the_view_is_djangos_500_and_logged(settings, counting, capfd):
    settings.ROOT_URLCONF = __name__
    assert webhook_match("/plain/") is None  # a view, but no carrier webhook
    direct, through_django = await both("POST", "/broken/voice/")
    assert direct.status_code == through_django.status_code == 500
    # Logged by django.request on both paths (the site's console handler writes to stderr).
    logged = capfd.readouterr().err
    assert logged.count("ERROR django.request: Internal Server Error: /broken/voice/") == 2
    assert logged.count("RuntimeError: the view failed") == 2
    assert counting == ["/broken/voice/"]


async def test_a_script_prefix_is_honoured_as_django_honours_it(twilio_number):
    """Behind a proxy that mounts the site below a path (ASGI ``root_path``)."""
    django_app = get_asgi_application()
    answers = []
    for app in (CarrierWebhookRouter(django_app), django_app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, root_path="/site"),
            base_url="https://voice.example.test",
        ) as client:
            response = await client.post(
                "/site" + VOICE, **signed("/site" + VOICE, fake.voice_params())
            )
        answers.append((response.status_code, b"<Stream" in response.content))
    assert answers[0] == answers[1] == (200, True)
