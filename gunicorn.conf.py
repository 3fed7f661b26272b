"""gunicorn's settings for the store, read from the working directory by every
`gunicorn config.wsgi` started here: a threaded worker whose own refusals of malformed
requests are JSON errors like the store's, a SIGTERM that stops the web side only once
this instance's consumer has drained, and every worker's metrics counted together in one
directory per instance (kvstore/api/server.py)."""

from kvstore.api import server
from kvstore.api.server import when_ready  # noqa: F401 (a gunicorn hook)

worker_class = "kvstore.api.server.JSONErrorWorker"
metrics_directory = server.use_metrics_directory()


def on_starting(arbiter):
    server.empty_metrics_directory(metrics_directory)


def child_exit(arbiter, worker):
    server.worker_exited(worker.pid)
