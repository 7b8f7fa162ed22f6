"""Test settings: the example project's, made deterministic and fast.

DATABASE_URL and REDIS_URL still come from the environment, so `make test-integration` runs the
same suite against PostgreSQL and Redis.
"""

import tempfile

from patter_site.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = "tests-secret-key-not-for-production-0123456789abcdef"
SECRET_KEY_FALLBACKS = []
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = tempfile.mkdtemp(prefix="voiceagents-test-media-")
SECURE_SSL_REDIRECT = False
VOICEAGENTS = {"PUBLIC_URL": "https://voice.example.test"}
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost", "voice.example.test"]
