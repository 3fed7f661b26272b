"""ASGI entry point: `gunicorn config.asgi`, under the store's worker class
(kvstore.api.loop.StoreWorker, which gunicorn.conf.py selects). The same application
as config.wsgi, fast path included, served from an event loop (kvstore.api.front)."""

from config.wsgi import application as wsgi_application  # sets Django up
from kvstore.api.front import Front  # noqa: E402 (needs Django set up)

application = Front(wsgi_application)
