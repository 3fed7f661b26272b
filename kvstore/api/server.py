"""The web server's worker: gunicorn's threaded worker, whose own refusals (a request
gunicorn cannot parse: a malformed request line, header or chunk, a line or headers too
large, an unsupported transfer coding) are JSON {"code", "detail"} like every other
error, not gunicorn's HTML page; and the master's part in the workers' metrics (one
directory per instance, emptied at start, a dead worker's live gauges dropped).
`gunicorn.conf.py` selects the worker and calls the hooks."""

import json
import os
import shutil

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "server_error",
}
# gunicorn answers a transfer coding it does not know with 501 (RFC 9112 says SHOULD);
# the store answers every malformed request with a 4xx, so a client's mistake is never
# counted as the server's.
REMAPPED = {501: (400, "Bad Request", "unsupported_transfer_coding")}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's `util.write_error`, with a JSON body."""
    code = CODES.get(status_int, "bad_request")
    status_int, reason, code = REMAPPED.get(status_int, (status_int, reason, code))
    body = json.dumps({"code": code, "detail": mesg or reason}).encode("ascii")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class JSONErrorWorker(ThreadWorker):
    def init_process(self):
        # gunicorn writes its refusals with util.write_error (an HTML page) and offers
        # no hook for them; this worker process writes them as JSON instead.
        util.write_error = write_json_error
        super().init_process()


def use_metrics_directory():
    """Put every worker's metrics in this instance's directory (`metrics_dir`,
    beside the cache). Called by the master before any worker exists:
    prometheus_client chooses its multiprocess mode when first imported, from this
    variable."""
    from kvstore import conf

    path = conf.from_environ().metrics_dir
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def empty_metrics_directory(path):
    """A new gunicorn starts counting from zero: the files of an earlier run would
    be added to its counts."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def worker_exited(pid):
    from kvstore import metrics  # after use_metrics_directory, in the master

    metrics.worker_exited(pid)
