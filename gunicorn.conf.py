"""gunicorn's settings for the store, read from the working directory by every
`gunicorn config.asgi` started here: the store's worker class (kvstore/api/loop.py:
uvicorn's event loop and C HTTP parser, with JSON refusals of malformed requests like
the store's other errors and gunicorn's limits), a SIGTERM that stops the web side only
once this instance's consumer has drained, every worker's metrics counted together in
one directory per instance, and the code a worker loaded kept out of the garbage
collector's scans (kvstore/api/server.py)."""

from kvstore.api import server
from kvstore.api.server import post_worker_init, when_ready  # noqa: F401 (hooks)

worker_class = "kvstore.api.loop.StoreWorker"
metrics_directory = server.use_metrics_directory()


def on_starting(arbiter):
    server.empty_metrics_directory(metrics_directory)


def child_exit(arbiter, worker):
    server.worker_exited(worker.pid)
