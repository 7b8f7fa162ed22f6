"""The browser test call's media consumer: the shared ``MediaStreamConsumer`` behind a staff login.

The route wraps it in Channels' session authentication (``telephony.routing``), so
``scope["user"]`` is the Django user of the page's session cookie. Only staff may talk to an
agent this way: anyone else is accepted and closed at once with 4001, so the page can say why
(a refusal before ``accept`` reaches a browser as an unexplained 1006). The call itself is
authenticated like every carrier's, by the stream token in ``start``.
"""

from __future__ import annotations

from voiceagents.audio.formats import PCM16_16K

from ... import closecodes
from ...media import MediaStreamConsumer
from .frames import BrowserCodec


class BrowserMediaConsumer(MediaStreamConsumer):
    carrier_id = "browser"
    codec_class = BrowserCodec
    carrier_format = PCM16_16K
    has_marks = True
    stop_reason = "caller_hangup"

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_active or not user.is_staff:
            await self.accept()
            await self.refuse(closecodes.FORBIDDEN, "not a staff session")
            return
        await super().connect()


def session_stack(app):
    """``app`` behind the page's session (``scope["user"]``) and an ``Origin`` check.

    A browser sends the session cookie with any page's WebSocket, so the ``Origin`` must be one of
    ``ALLOWED_HOSTS`` (cross-site WebSocket hijacking). The carriers' routes need neither: they are
    not browsers and send no cookie and no ``Origin``.
    """
    from channels.auth import AuthMiddlewareStack
    from channels.security.websocket import AllowedHostsOriginValidator

    return AllowedHostsOriginValidator(AuthMiddlewareStack(app))
