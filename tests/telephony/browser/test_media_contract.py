"""The media-consumer contract (tests/telephony/media_cases.py) for the browser test call.

Calls come to exist as the page makes them: a staff member's POST to the start view. The stream
is opened with that member's session cookie and an allowed ``Origin``, as a browser does, through
the project's own WebSocket routes. The contract's handshake test is replaced here: the browser
carrier accepts a socket without a staff session and closes it with 4001, so the page can say
why (the other carriers refuse such a handshake before accepting it).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.conf import settings
from django.test import Client
from django.urls import reverse

from telephony import closecodes
from telephony.routing import websocket_urlpatterns
from tests.calls.conftest import fake_openai  # noqa: F401  (the provider behind the calls)
from tests.calls.harness import Incoming, OpenAIProvider
from tests.telephony.media_cases import *  # noqa: F403  (the contract suite runs here)
from voiceagents.models import Agent, Call, CallStatus, Credential

from .fake import FRAME_BYTES, FakeBrowserPage

HOST = b"voice.example.test"  # in the test settings' ALLOWED_HOSTS
ORIGIN = b"https://voice.example.test"
PASSWORD = "correct-horse-battery-staple"


def _login(username: str, *, staff: bool) -> str:
    """A logged-in session's cookie value (``staff``: a staff member's)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff)
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class BrowserHarness(OpenAIProvider):
    """``tests.calls.harness.CarrierHarness`` for the browser, with OpenAI Realtime behind it."""

    carrier = "browser"
    path = "/telephony/browser/media/"
    frame_bytes = FRAME_BYTES

    def __init__(self, fake_openai):  # noqa: F811
        super().__init__(fake_openai)
        self.application = URLRouter(websocket_urlpatterns)
        self.client: Client | None = None
        self.agent: Agent | None = None
        self.session = ""

    def _start_call(self) -> Incoming:
        if self.agent is None:
            from django.contrib.auth import get_user_model

            openai = Credential(vendor="openai", label="openai", api_base_url=self.fake_openai.url)
            openai.secret = "sk-test-openai"
            openai.save()
            self.agent = Agent.objects.create(
                name="Front desk",
                slug="front-desk",
                first_message="Hello from Acme!",
                credential=openai,
            )
            staff = get_user_model().objects.create_user("ada", password=PASSWORD, is_staff=True)
            self.client = Client()
            self.client.force_login(staff)
            self.session = self.client.cookies[settings.SESSION_COOKIE_NAME].value
        response = self.client.post(reverse("telephony:browser_start", args=[self.agent.pk]))
        assert response.status_code == 200, response.content
        ids = response.json()
        return Incoming(ids["call_id"], ids["token"], ids["carrier_call_id"], ids)

    async def new_call(self) -> Incoming:
        return await sync_to_async(self._start_call)()

    def headers(self, incoming, *, authenticated: bool = True, token=None, session=None):
        headers = [(b"host", HOST), (b"origin", ORIGIN)]
        session = self.session if session is None else session
        if authenticated and session:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
        return headers

    def caller(self, transport, incoming) -> FakeBrowserPage:
        return FakeBrowserPage(transport.send, transport.receive)

    async def start(self, caller, incoming, **override) -> None:
        await caller.start(
            override.get("call_id", incoming.call_id),
            override.get("token", incoming.token) or "",
            override.get("carrier_call_id", incoming.carrier_call_id),
            incoming.extra["stream_id"],
        )


@pytest.fixture
def media_harness(fake_openai, recordings_dir):  # noqa: F811
    return BrowserHarness(fake_openai)


# -- the browser's own handshake: a staff session, from an allowed origin -----------------------


async def open_with(harness, headers):
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(harness.application, harness.path, headers=headers)
    accepted, code = await communicator.connect(timeout=10)
    if accepted:
        message = await communicator.receive_output(5)
        await communicator.wait()
        return accepted, message
    return accepted, code


async def test_an_unauthenticated_handshake_is_refused(media_harness):
    """Replaces the contract's test of that name: refused with 4001 after accept (see above)."""
    await media_harness.new_call()
    accepted, message = await open_with(media_harness, media_harness.headers(None, session=""))
    assert accepted
    assert message["type"] == "websocket.close" and message["code"] == closecodes.FORBIDDEN
    assert media_harness.provider_connections() == 0


async def test_a_logged_in_member_who_is_not_staff_is_refused(media_harness):
    incoming = await media_harness.new_call()
    session = await sync_to_async(_login)("bob", staff=False)
    accepted, message = await open_with(media_harness, media_harness.headers(None, session=session))
    assert accepted and message["code"] == closecodes.FORBIDDEN
    assert media_harness.provider_connections() == 0
    call = await Call.objects.aget(pk=incoming.call_id)
    assert call.status == CallStatus.RINGING and call.stream_token_used_at is None


async def test_a_socket_from_another_site_is_refused_before_accept(media_harness):
    await media_harness.new_call()
    headers = [
        (name, b"https://evil.example" if name == b"origin" else value)
        for name, value in media_harness.headers(None)
    ]
    accepted, _ = await open_with(media_harness, headers)
    assert not accepted


async def test_the_call_row_is_the_browser_s(media_harness, media_streams):
    incoming, caller, _ = await streaming(media_harness, media_streams)  # noqa: F405
    await caller.stop()
    call = await ended(incoming.call_id)  # noqa: F405
    assert (call.carrier, call.direction, call.from_number) == ("browser", "inbound", "browser:ada")
    assert call.status == CallStatus.COMPLETED and call.agent_id == media_harness.agent.pk
