"""gunicorn's settings for bench/asgi.py's second web side of one instance (the store
under gunicorn's threaded worker): the store's hooks (kvstore/api/server.py: the
garbage collector's freeze, the workers' metrics counted together) with a metrics
directory of its own, so that starting it does not empty the directory of the web side
beside it."""

import os
from pathlib import Path

from kvstore.api import server
from kvstore.api.server import post_worker_init  # noqa: F401 (hook)

worker_class = "gthread"
metrics_directory = Path(os.environ["BENCH_METRICS_DIR"])
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_directory)


def on_starting(arbiter):
    server.empty_metrics_directory(metrics_directory)


def child_exit(arbiter, worker):
    server.worker_exited(worker.pid)
