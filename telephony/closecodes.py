"""WebSocket close codes of the media streams, valid under every ASGI server we run.

Daphne (autobahn) accepts only 1000 and 3000-4999 from an application; anything else, 1008
included, raises inside the server, logs a traceback and reaches the carrier as 1011. So a normal
end is 1000 and every refusal is an application code from 4000-4999 (RFC 6455 §7.4.2). The table
is in docs/media-streams.md.

A stream refused before the WebSocket is accepted (a bad handshake signature, no Telnyx auth
token) never gets a close code: the server answers the upgrade with HTTP 403.
"""

NORMAL = 1000
#: Authentication failed: forged, expired, replayed or foreign stream token, or a ``start`` for
#: another carrier call than the one the token was minted for.
FORBIDDEN = 4001
#: ``start`` is unusable: no call id, token, stream id or carrier call id, or a malformed one.
BAD_START = 4002
#: No valid ``start`` within ``VOICEAGENTS['STREAM_START_TIMEOUT']`` seconds of the handshake.
START_TIMEOUT = 4003
#: The call cannot run: it is over already, its agent is gone or disabled, or its provider is
#: not available.
CALL_UNAVAILABLE = 4004
#: This process runs ``VOICEAGENTS['MAX_CALLS_PER_PROCESS']`` calls already (``telephony.limits``).
AT_CAPACITY = 4005
#: Our side failed: configuration error, provider cannot be built, internal error.
SERVER_ERROR = 4011
