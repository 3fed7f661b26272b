"""Django settings of the project that runs the store.

The store's own settings come from `kvstore.conf`, which reads the environment once.
"""

import os

from kvstore import conf

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
    "kvstore.apps.KvstoreConfig",
    "users.apps.UsersConfig",
]

MIDDLEWARE = [
    "kvstore.api.middleware.RedirectToOwnerMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

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
# Bodies larger than this are refused (413) before they are read; each topic's
# max.message.bytes is checked on top of it, before anything is produced.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "kvstore.api.handlers.exception_handler",
    "DEFAULT_PARSER_CLASSES": ["kvstore.api.parsers.StoreJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "kvstore.api.renderers.ValueJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
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
    },
}
