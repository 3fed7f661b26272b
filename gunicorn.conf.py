"""gunicorn's settings for the store, read from the working directory by every
`gunicorn config.wsgi` started here: a threaded worker whose own refusals of malformed
requests are JSON errors like the store's, and a SIGTERM that stops the web side only
once this instance's consumer has drained (kvstore/api/server.py)."""

from kvstore.api.server import when_ready  # noqa: F401 (a gunicorn hook)

worker_class = "kvstore.api.server.JSONErrorWorker"
