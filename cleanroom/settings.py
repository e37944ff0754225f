"""Settings, all from the environment (django-environ).

With no variable set the service runs on embedded defaults: a SQLite file and a
SQLite-backed Celery broker under ``var/``, and a development key-encryption key
generated into ``var/`` on first run (never committed).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CLEANROOM_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()


def _dev_secret(name: str, make: bool = True) -> str:
    """A development secret kept in var/ so restarts keep sessions and data readable."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _dev_secret("dev-secret-key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Key-encryption key for contributed data at rest: 32 random bytes, base64.
CLEANROOM_KEK = env.str("CLEANROOM_KEK", default="") or _dev_secret("dev-kek")
# Older KEKs still accepted for unwrapping during a rotation (comma-separated, base64).
CLEANROOM_KEK_PREVIOUS = env.list("CLEANROOM_KEK_PREVIOUS", default=[])
# Ed25519 private key (PEM) that signs audit checkpoints; generated into var/ when unset.
CLEANROOM_AUDIT_KEY_FILE = env.str(
    "CLEANROOM_AUDIT_KEY_FILE", default=str(VAR_DIR / "audit_key.pem")
)
CLEANROOM_ONBOARDING_CREDENTIAL = env.str(
    "CLEANROOM_ONBOARDING_CREDENTIAL", default="PersonhoodCredential"
)
# The origin wallets sign for (presentation `domain`) and that links are built on.
CLEANROOM_ORIGIN = env.str("CLEANROOM_ORIGIN", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files: no CDN at run time
    "django_celery_results",
    "cleanroom.accounts",
    "cleanroom.datasets",
    "cleanroom.queries",
    "identity",
    "payouts",
    "audit",
    "portal",
    "cleanroom.operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "cleanroom.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF (which reads a form's body): 413 and the portal role check come first.
    "cleanroom.middleware.RequestGuardMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cleanroom.urls"
WSGI_APPLICATION = "cleanroom.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "portal:sign-in"
LOGIN_REDIRECT_URL = "portal:home"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.navigation.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cleanroom.sqlite3'}"),
}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
# Keep a connection per web thread for a minute instead of opening one per request (a
# PostgreSQL backend per request cost more CPU than most reads); checked before reuse,
# so a restarted database costs one failed ping, not a failed request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG and env.bool("CLEANROOM_MANIFEST_STATIC", default=False)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Uploads: a 50 MB body is refused outright; files above 2.5 MB stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)
CLEANROOM_MAX_UPLOAD_BYTES = env.int("CLEANROOM_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
# Any request body above this is refused with 413 before a byte of it is read (an upload
# of the largest allowed file plus its multipart envelope fits).
CLEANROOM_MAX_REQUEST_BYTES = env.int(
    "CLEANROOM_MAX_REQUEST_BYTES",
    default=max(DATA_UPLOAD_MAX_MEMORY_SIZE, CLEANROOM_MAX_UPLOAD_BYTES) + 64 * 1024,
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "cleanroom.parsers.JSONParser",  # bounded nesting, finite numbers (cleanroom/parsers.py)
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "cleanroom.schema.AutoSchema",
    # Problem details for every client error, and the refusals compliance asks about audited.
    "EXCEPTION_HANDLER": "cleanroom.refusals.problem_details_audited",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Clean room API",
    "DESCRIPTION": "Differentially private answers over data people are paid for.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: JSON only, late acks, redelivery when a worker dies, time limits.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# How much lower the worker's CPU priority is than the web's (cleanroom/celery.py).
CLEANROOM_WORKER_NICE = env.int("CLEANROOM_WORKER_NICE", default=10)
# Redis redelivers an unacknowledged task (its worker died) after the visibility timeout.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else {}
)
CELERY_TASK_ALWAYS_EAGER = False

# Django's cache holds the rate-limit counters (cleanroom/throttling.py): Redis whenever the
# broker is Redis (or CACHE_URL says where), so every web worker sees the same counts; a
# per-process memory cache only on the embedded zero-setup default.
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CELERY_BROKER_URL,
            "KEY_PREFIX": "cleanroom-cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Set only behind a proxy that overwrites it (e.g. HTTP_X_REAL_IP); REMOTE_ADDR otherwise.
CLEANROOM_CLIENT_ADDRESS_HEADER = env.str("CLEANROOM_CLIENT_ADDRESS_HEADER", default="")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
# Payouts: settle the distributions recorded since the last run, then pay who is due.
CELERY_BEAT_SCHEDULE["payouts-settlement"] = {
    "task": "payouts.tasks.settlement_run",
    "schedule": env.int("CLEANROOM_SETTLEMENT_EVERY_SECONDS", default=3600),
}
# Audit: sign a checkpoint over whatever was appended since the last one (also every N events).
CELERY_BEAT_SCHEDULE["audit-checkpoint"] = {
    "task": "audit.tasks.audit_checkpoint_take",
    "schedule": env.int("CLEANROOM_AUDIT_CHECKPOINT_SECONDS", default=300),
}
# Datasets: delete uploads older than their dataset's retention, from every stored form.
CELERY_BEAT_SCHEDULE["datasets-retention"] = {
    "task": "cleanroom.datasets.tasks.contributions_expire_task",
    "schedule": env.int("CLEANROOM_RETENTION_EVERY_SECONDS", default=86400),
}
# Datasets: compact the uploads still waiting (a job also runs once enough are waiting).
CELERY_BEAT_SCHEDULE["datasets-compaction"] = {
    "task": "cleanroom.datasets.tasks.pools_compact_task",
    "schedule": env.int("CLEANROOM_COMPACTION_EVERY_SECONDS", default=300),
}
# Datasets: queue again erasures stuck pending (their rows stay in pool segments until purged).
CELERY_BEAT_SCHEDULE["datasets-erasure-reaper"] = {
    "task": "cleanroom.datasets.tasks.erasures_resume_task",
    "schedule": env.int("CLEANROOM_ERASURE_REAP_SECONDS", default=600),
}
# Queries: a run records a heartbeat every few seconds; one silent for DEAD_AFTER seconds
# lost its worker and is taken over by the reaper's next pass (run again, under the same
# charge if it had taken the mechanism), so a dead worker is noticed within a minute.
CLEANROOM_QUERY_HEARTBEAT_SECONDS = env.float("CLEANROOM_QUERY_HEARTBEAT_SECONDS", default=5)
CLEANROOM_QUERY_DEAD_AFTER_SECONDS = env.float("CLEANROOM_QUERY_DEAD_AFTER_SECONDS", default=20)
CELERY_BEAT_SCHEDULE["queries-reap"] = {
    "task": "cleanroom.queries.reap",
    "schedule": env.float("CLEANROOM_QUERIES_REAP_SECONDS", default=15),
}
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"  # Django's default, stated: no URL leaves the site
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# The test database must be reachable by a separate worker process, so on SQLite it is a file.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(VAR_DIR / "test-cleanroom.sqlite3")
