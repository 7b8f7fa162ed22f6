"""Settings of the example project, read from the environment with django-environ.

Embedded default (nothing set): SQLite under var/, the in-memory channel layer and eager Celery.
Production: set DEBUG=0, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, REDIS_URL and
VOICEAGENTS_PUBLIC_URL (see the README's settings reference).
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

# A development key only while DEBUG is on; production must set SECRET_KEY.
SECRET_KEY = env(
    "SECRET_KEY",
    default="django-insecure-voiceagents-development-only" if DEBUG else environ.Env.NOTSET,
)
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

PUBLIC_URL = env("VOICEAGENTS_PUBLIC_URL", default="")
_public_host = urlsplit(PUBLIC_URL).hostname if PUBLIC_URL else None
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if _public_host and _public_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_public_host)
CSRF_TRUSTED_ORIGINS = (
    [f"https://{_public_host}"] if _public_host and PUBLIC_URL.startswith("https") else []
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "voiceagents",
    "telephony",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "patter_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "patter_site.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"].get("ENGINE", "").endswith((".sqlite3", ".spatialite")):
    # The web process, the Celery worker and the calls' transcript writer share the file. WAL:
    # readers never wait for a writer and a commit is one append (synchronous=NORMAL: no fsync per
    # commit, still crash-safe in WAL). IMMEDIATE: a transaction takes the write lock when it
    # begins, so a busy database means waiting up to `timeout` seconds instead of failing with
    # "database is locked" halfway through. Options given in DATABASE_URL win.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite_options.setdefault("timeout", 20)

if (
    DATABASES["default"].get("ENGINE", "").endswith(".postgresql")
    and not DATABASES["default"]["CONN_MAX_AGE"]
):
    # Under ASGI every database_sync_to_async hop (call set-up, each transcript batch) and every
    # request closes its connection: without a pool each one is a new PostgreSQL backend. Django's
    # psycopg pool keeps a few open for the whole process (the postgres extra installs it).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("pool", True)

if DATABASES["default"].get("ENGINE", "").endswith(".postgresql"):
    # With the database down, a request waits for a connection up to the pool's timeout (psycopg's
    # default: 30 s) or, without a pool, for the TCP connect. Both stay under the webhooks' deadline
    # (VOICEAGENTS_WEBHOOK_DEADLINE, 8 s by default; Twilio gives up at 15 s), so that a webhook
    # fails in time to answer its apology. libpq's connect_timeout is whole seconds, 2 at least.
    _webhook_deadline = env.float("VOICEAGENTS_WEBHOOK_DEADLINE", default=8.0)
    _wait = min(env.float("DATABASE_POOL_TIMEOUT", default=5.0), _webhook_deadline)
    _postgres_options = DATABASES["default"].setdefault("OPTIONS", {})
    _postgres_options.setdefault("connect_timeout", max(2, int(_wait)))
    if _postgres_options.get("pool") is True:
        _postgres_options["pool"] = {"timeout": _wait}
    elif isinstance(_postgres_options.get("pool"), dict):
        _postgres_options["pool"].setdefault("timeout", _wait)

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No socket timeout: channels-redis blocks 5 s per receive, and redis-py's own default
            # socket timeout of 5 s would kill every idle consumer (a live call) after ~5 s.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Eager: nothing is sent. A host name keeps kombu from warning at start-up that it assumed one.
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# For `celery -A patter_site beat` (with REDIS_URL): close calls a crashed process left live, and
# keep the carrier-webhook dedup table small.
CELERY_BEAT_SCHEDULE = {
    "recover-lost-calls": {"task": "voiceagents.recover_lost_calls", "schedule": 60.0},
    "reconcile-stale-calls": {"task": "voiceagents.reconcile_stale_calls", "schedule": 300.0},
    "prune-processed-webhook-events": {
        "task": "voiceagents.prune_processed_webhook_events",
        "schedule": 86400.0,
    },
    "purge-expired-call-content": {
        "task": "voiceagents.purge_expired_call_content",
        "schedule": 86400.0,
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
MEDIA_URL = "media/"  # never served by urls.py: recordings go through the admin's checked view
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
if "MEDIA_ROOT" not in os.environ:
    # The default is inside the checkout, but under var/, which .gitignore keeps out of git; a
    # MEDIA_ROOT of your own is checked like any project's.
    SILENCED_SYSTEM_CHECKS = ["voiceagents.W003"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

VOICEAGENTS = {
    "PUBLIC_URL": PUBLIC_URL or None,
}
if env("VOICEAGENTS_CREDENTIALS_KEY", default=""):
    VOICEAGENTS["CREDENTIALS_KEY"] = env.list("VOICEAGENTS_CREDENTIALS_KEY")

# Production hardening: on whenever DEBUG is off (see "Deploying" in the README).
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_X_FORWARDED_PROTO", "https")
        if env.bool("TRUST_X_FORWARDED_PROTO", default=True)
        else None
    )
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancers probe over plain HTTP inside the private network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz(/|$)"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # runserver's request log has its own handler; don't print each request twice.
        "django.channels.server": {"propagate": False},
    },
}
