"""gunicorn's uvicorn worker class, as the store runs it (`-k
kvstore.api.loop.StoreWorker`, serving config.asgi): an event loop with a C HTTP parser
(uvloop, httptools) in place of the threaded worker, with everything the store's
threaded worker does (kvstore/api/server.py) kept:

- Its own refusals are JSON {"code", "detail"} like every other error, with the
  threaded worker's statuses and codes, and it refuses what gunicorn refuses and
  llhttp would let through: a request line over `limit_request_line` (414), more
  than `limit_request_fields` headers or one over `limit_request_field_size` (431),
  a repeated Host or Content-Type, an HTTP version other than 1.0 and 1.1, a target
  that is neither a path nor an absolute URL (nor `*` for OPTIONS), an Expect other
  than 100-continue (417), and a transfer coding it does not know (400
  unsupported_transfer_coding).
- A method llhttp does not know but gunicorn would pass on (3-20 capital letters)
  still reaches the application, which answers 405 with its Allow header: the
  request is parsed with a stand-in method llhttp knows, and the application sees
  the one sent.
- SIGTERM stops accepting only once this instance's consumer has drained, then ends
  the watch streams at once, as the threaded worker's does.
"""

import json
import re
import signal
import sys
import threading

import httptools
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from kvstore import conf
from kvstore.api.server import BEGIN_GRACE, wait_for_drain

# gunicorn's defaults (its --limit-request-* settings replace them).
LIMITS = {"line": 4094, "fields": 100, "field_size": 8190}
UNIQUE = (b"host", b"content-type")  # llhttp refuses a repeated Content-Length itself
CODINGS = (b"chunked", b"gzip", b"x-gzip", b"deflate", b"compress", b"identity")
# A method gunicorn passes on (its default: 3-20 capital letters), and what llhttp
# parses in its place.
CONVENTIONAL_METHOD = re.compile(rb"([A-Z]{3,20}) ")
STAND_IN = b"PURGE"
ABSOLUTE = re.compile(rb"https?://", re.IGNORECASE)
# The JSON code of each status the server refuses with (400: "bad_request", unless the
# refusal names its own).
CODES = {414: "uri_too_long", 417: "expectation_failed", 431: "headers_too_large"}


class Refusal(Exception):
    def __init__(self, status, detail, code=None):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


class StoreProtocol(HttpToolsProtocol):
    limits = LIMITS
    _refusal = None
    _method = None  # the method sent, when llhttp parsed a stand-in

    def on_message_begin(self):
        super().on_message_begin()
        self._fields, self._seen, self._in_body = 0, set(), False
        self._codings = []

    def on_url(self, url):
        super().on_url(url)
        if len(self.url) > self.limits["line"]:
            self._refuse_later(Refusal(414, "The request line is too long."))

    def on_header(self, name, value):
        self._fields += 1
        if self._fields > self.limits["fields"]:
            self._refuse_later(Refusal(431, "Too many header fields."))
        if len(name) + len(value) + 2 > self.limits["field_size"]:
            self._refuse_later(Refusal(431, "A header field is too large."))
        lower = name.lower()
        if lower in UNIQUE:
            if lower in self._seen:
                self._refuse_later(
                    Refusal(400, f"More than one {name.decode()} header.")
                )
            self._seen.add(lower)
        elif lower == b"transfer-encoding":
            for coding in value.split(b","):
                self._codings.append(coding.strip().lower())
                if self._codings[-1] not in CODINGS:
                    self._refuse_later(
                        Refusal(
                            400,
                            "Unsupported transfer coding.",
                            "unsupported_transfer_coding",
                        )
                    )
        elif lower == b"expect" and value.strip().lower() != b"100-continue":
            self._refuse_later(Refusal(417, "Only Expect: 100-continue is supported."))
        super().on_header(name, value)

    def on_headers_complete(self):
        if self.parser.get_http_version() not in ("1.0", "1.1"):
            self._refuse_later(Refusal(400, "Unsupported HTTP version."))
        codings = self._codings
        if codings and (
            codings[-1] != b"chunked"
            or codings.count(b"chunked") > 1
            or b"identity" in codings
        ):  # chunked must come last, once: nothing else frames a request's body
            self._refuse_later(Refusal(400, "Invalid Transfer-Encoding."))
        method = self._method or self.parser.get_method()
        if not (
            self.url.startswith(b"/")
            or ABSOLUTE.match(self.url)
            or (self.url == b"*" and method == b"OPTIONS")
        ):
            self._refuse_later(Refusal(400, "Invalid request target."))
        super().on_headers_complete()
        self._in_body = True
        if self._method is not None:  # this request's only
            self.scope["method"], self._method = self._method.decode("ascii"), None

    def data_received(self, data):
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            self._parse_with_stand_in(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            if self._refusal is None and self._in_body:
                self._end_body()
            else:
                self._refuse(self._refusal or _refusal_for(error))

    def _end_body(self):
        """A body llhttp cannot parse (chunked framing), after the application has
        the request: it answers with what arrived (the store refuses every chunked
        body, 411, before reading it), and the connection closes after."""
        self.cycle.more_body = False
        self.cycle.keep_alive = False
        self.cycle.message_event.set()
        self.flow.pause_reading()

    def _parse_with_stand_in(self, data):
        """A request whose method llhttp does not know: parse it again with a
        stand-in method if gunicorn would pass it on, else refuse it."""
        conventional = CONVENTIONAL_METHOD.match(data)
        if conventional is None:  # not at the start of `data`: a method llhttp refused
            self._refuse(Refusal(400, "Invalid HTTP method."))
            return
        self._method = conventional[1]
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        try:
            self.parser.feed_data(STAND_IN + data[conventional.end(1) :])
        except httptools.HttpParserError as error:
            self._refuse(self._refusal or _refusal_for(error))

    def send_400_response(self, msg):
        self._refuse(Refusal(400, msg))

    def _refuse_later(self, refusal):
        """Refuse from a parser callback: httptools turns the raise into its own
        error, which data_received answers with this refusal."""
        self._refusal = refusal
        raise refusal

    def _refuse(self, refusal):
        status = refusal.status
        code = refusal.code or CODES.get(status, "bad_request")
        body = json.dumps({"code": code, "detail": refusal.detail}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _refusal_for(error):
    """The refusal of a request llhttp could not parse."""
    return Refusal(400, f"Malformed request: {error}.")


class DrainingServer(Server):
    """uvicorn's server, whose first SIGTERM (or SIGINT) stops accepting only once
    the consumer has drained, then ends the watch streams with a retry hint."""

    _stopping = False

    def handle_exit(self, sig, frame):
        if self._stopping or sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)
            return
        self._stopping = True
        threading.Thread(
            target=self._exit_after_drain, args=(sig, frame), daemon=True
        ).start()

    def _exit_after_drain(self, sig, frame):
        from kvstore.watch import hub

        try:
            wait_for_drain(BEGIN_GRACE["worker"])
        finally:
            hub.stop_all()
            super().handle_exit(sig, frame)


class StoreWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "uvloop", "http": StoreProtocol}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limits = {
            "line": self.cfg.limit_request_line or LIMITS["line"],
            "fields": self.cfg.limit_request_fields or LIMITS["fields"],
            "field_size": self.cfg.limit_request_field_size or LIMITS["field_size"],
        }
        self.config.http = type("Protocol", (StoreProtocol,), {"limits": limits})

    def load_wsgi(self):
        super().load_wsgi()
        if hasattr(self.wsgi, "configure"):  # kvstore.api.front.Front
            self.wsgi.configure(self.cfg.threads, conf.from_environ().max_watches)

    async def _serve(self):
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
