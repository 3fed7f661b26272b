"""The web server's worker: gunicorn's threaded worker, whose own refusals (a request
gunicorn cannot parse: a malformed request line, header or chunk, a line or headers too
large, an unsupported transfer coding) are JSON {"code", "detail"} like every other
error, not gunicorn's HTML page, and whose thread pool has room for the requests that
wait long (watch streams and long-polls) beside `--threads` for everything else.
`gunicorn.conf.py` selects it."""

import json
from concurrent import futures

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from kvstore import conf

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

    def get_thread_pool(self):
        """`--threads` for plain requests plus one per long wait the instance allows
        (KVSTORE_MAX_WATCHES, enforced across workers by kvstore.waiting.Slots): a
        stream holds its thread for its life, and never one a plain request needs.
        The pool makes threads only as they are needed."""
        waits = conf.from_environ().max_watches
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads + waits)

    def handle_exit(self, sig, frame):
        """SIGTERM: end the watch streams now (with a retry hint), so their clients
        resume elsewhere instead of waiting out the graceful timeout."""
        from kvstore.watch import hub

        hub.stop_all()
        super().handle_exit(sig, frame)
