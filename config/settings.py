"""Django settings of the project that runs the store.

The store's own settings come from `kvstore.conf`, which reads the environment once.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from kvstore import conf


def _flag(name):
    """DJANGO_* on/off switches: 1 or 0 (unset is 0)."""
    value = os.environ.get(name, "").strip() or "0"
    if value not in ("0", "1"):
        raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")
    return value == "1"


def _whole(name):
    value = os.environ.get(name, "").strip() or "0"
    if not (value.isascii() and value.isdigit()):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")
    return int(value)


BASE_DIR = conf.BASE_DIR
KVSTORE = conf.from_environ()

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
SECRET_KEY = (
    os.environ.get("DJANGO_SECRET_KEY") or "kvstore-development-only-not-secret"
)
# By default only the advertised URL's host and loopback names: links the store writes
# come from KVSTORE_ADVERTISED_URL, and a foreign Host header is refused (400).
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
    if host.strip()
] or conf.default_hosts(KVSTORE)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "kvstore.apps.KvstoreConfig",
    "users.apps.UsersConfig",
]

MIDDLEWARE = [
    # Outermost: it times and counts every answer, the others' included.
    "kvstore.api.observe.ObserveMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "kvstore.api.middleware.RedirectToOwnerMiddleware",
    "django.middleware.common.CommonMiddleware",
    # DRF's views are exempt (the API takes only JSON bodies, which no cross-site
    # form can send); it guards whatever else a project adds.
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# HTTPS, for deployments behind TLS (all off by default, so plain-HTTP local runs
# work): see the README's "In production".
SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP
SECURE_HSTS_SECONDS = _whole("DJANGO_SECURE_HSTS_SECONDS")
SECURE_HSTS_INCLUDE_SUBDOMAINS = _flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = _flag("DJANGO_SECURE_HSTS_PRELOAD")
if _flag("DJANGO_BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _flag("DJANGO_SECURE_COOKIES")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": ["django.template.context_processors.request"]
        },
    }
]

# The data never goes through the ORM: Kafka is the database and the read cache is
# kvstore's own SQLite file. Django's own tables are not needed.
DATABASES = {}

STATIC_URL = "static/"
# Collected by `manage.py collectstatic` (bin/setup, the Docker build) and served by
# WhiteNoise from gunicorn, with hashed names and far-future caching.
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Bodies larger than this are refused (413) before they are read; each topic's
# max.message.bytes is checked on top of it, before anything is produced.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # Both do nothing while KVSTORE_AUTH=off.
    "DEFAULT_AUTHENTICATION_CLASSES": ["kvstore.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["kvstore.api.auth.RolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "kvstore.api.handlers.exception_handler",
    "DEFAULT_PARSER_CLASSES": ["kvstore.api.parsers.StoreJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "kvstore.api.renderers.ValueJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "kvstore",
    "DESCRIPTION": "A Kafka-native key-value store: a compacted topic per namespace is "
    "the database; a key's owner answers, any other instance redirects (307). An "
    "instance run with KVSTORE_AUTH=required wants an API key on every request but "
    "the health probes; with KVSTORE_AUTH=off (development) none.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": r"/api/",
    "SERVE_INCLUDE_SCHEMA": False,  # the document does not describe itself
    "COMPONENT_SPLIT_REQUEST": True,  # what a write takes (UserRequest) is stricter
    # The schema and the docs need a key (any role) when KVSTORE_AUTH=required.
    "SERVE_PERMISSIONS": ["kvstore.api.auth.RolePermission"],
    # Swagger UI and ReDoc from the sidecar package, served by WhiteNoise: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "kvstore.api.schema.add_common_answers",
    ],
}

# The debug page's settings and variables, with passwords (KAFKA_SASL_PASSWORD) hidden.
DEFAULT_EXCEPTION_REPORTER_FILTER = "kvstore.api.handlers.SafeReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "kvstore": {
            "handlers": ["console"],
            "level": os.environ.get("KVSTORE_LOG_LEVEL", "INFO"),
        },
        "kafka": {"handlers": ["console"], "level": "WARNING"},
        # Uncaught errors (the JSON 500s) with their tracebacks, in the server's log.
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
