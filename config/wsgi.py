"""WSGI entry point: `gunicorn config.wsgi`. The store's fast path answers plain
JSON GETs of one key and writes plain JSON PUTs of one key below Django, with the answer
Django would give (kvstore.api.fast); everything else is Django's."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from kvstore.api.fast import FastPath  # noqa: E402 (needs Django set up)

application = FastPath(django_application)
