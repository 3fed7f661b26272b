"""gunicorn's settings for the store, read from the working directory by every
`gunicorn config.wsgi` started here: a threaded worker whose own refusals of malformed
requests are JSON errors like the store's (kvstore/api/server.py)."""

worker_class = "kvstore.api.server.JSONErrorWorker"
