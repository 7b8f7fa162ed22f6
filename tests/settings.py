"""Test settings: the example project's, made deterministic and fast.

DATABASE_URL and REDIS_URL still come from the environment, so `make test-integration` runs the
same suite against PostgreSQL and Redis.
"""

import os
import tempfile

from patter_site.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = "tests-secret-key-not-for-production-0123456789abcdef"
SECRET_KEY_FALLBACKS = []
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# A server process under test may be given the test's own (tests/servers).
MEDIA_ROOT = os.environ.get("TEST_MEDIA_ROOT") or tempfile.mkdtemp(prefix="voiceagents-test-media-")
SECURE_SSL_REDIRECT = False
VOICEAGENTS = {"PUBLIC_URL": "https://voice.example.test"}
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost", "voice.example.test"]

if os.environ.get("TEST_STALL_ON_SIGUSR1"):
    # tests/servers/test_stall_recovery.py: SIGUSR1 blocks this server's event loop for the given
    # seconds, from a callback on the loop itself (what a blocking call in a handler does).
    import asyncio
    import signal
    import time

    def _stall(*_):
        seconds = float(os.environ["TEST_STALL_ON_SIGUSR1"])
        asyncio.get_running_loop().call_soon(time.sleep, seconds)

    signal.signal(signal.SIGUSR1, _stall)
