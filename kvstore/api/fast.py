"""The fast path, below Django: a plain JSON GET of one key that this instance serves
is answered straight from the cache, with exactly the answer Django would give.

A GET by key is the store's commonest request, and Django's request handling, its
middleware and DRF's view machinery cost most of its time (docs/PROFILES.md). This WSGI
application answers the plain case itself and hands everything else to Django: any
query string, an Accept other than JSON, a conditional or waiting read, a key that
needs percent-decoding, an error, a redirect, auth that would refuse. Which headers the
answer carries is not written down here but learned from Django's own 200 for the same
namespace, host and scheme, so whatever the project's middleware adds (security
headers, HSTS, Vary, Allow) stays identical; only ETag, Kvstore-Position,
Content-Length and Server-Timing are the fast path's own.
"""

import re
import threading
import time

from django.urls import resolve
from rest_framework.exceptions import APIException

from kvstore import keys, metrics, timing
from kvstore.api import auth
from kvstore.api.renderers import ValueJSONRenderer
from kvstore.conf import store_settings
from kvstore.errors import StoreError
from kvstore.positions import HEADER as POSITION
from kvstore.repository import get_repository

PLAIN_ACCEPT = ("", "*/*", "application/json")
# Headers whose presence makes a GET more than plain (conditional, waiting, or one
# the middleware refuses).
NOT_PLAIN = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_PREFER",
    "HTTP_KVSTORE_MIN_POSITION",
    "HTTP_TRANSFER_ENCODING",
    "HTTP_CONTENT_ENCODING",
)
# The fast path's own headers; every other one is Django's, as learned.
OWN = ("etag", POSITION.lower(), "content-length", "server-timing")


class FastPath:
    """WSGI middleware: `application = FastPath(get_wsgi_application())`."""

    def __init__(self, django):
        self.django = django
        self._item = None
        self._learned = {}  # (namespace, host, scheme, proto) -> _Template
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        plain = self._plain(environ)
        if plain is None:
            return self.django(environ, start_response)
        namespace, key = plain
        template = self._learned.get(_context(environ, namespace))
        if template is None:
            return self._learn(environ, start_response, namespace)
        answer = self._answer(environ, namespace, key, template)
        if answer is None:
            return self.django(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    def _plain(self, environ):
        """(namespace, key) of a plain JSON GET of one key, else None."""
        if environ["REQUEST_METHOD"] != "GET" or environ.get("QUERY_STRING"):
            return None
        raw = environ.get("RAW_URI", "")
        # Only a path that needs no decoding: then PATH_INFO is the key as sent.
        if not raw.isascii() or "%" in raw or "?" in raw:
            return None
        if environ.get("HTTP_ACCEPT", "") not in PLAIN_ACCEPT:
            return None
        if any(name in environ for name in NOT_PLAIN):
            return None
        match = self._pattern().match(environ.get("PATH_INFO", ""))
        return None if match is None else (match["ns"], match["key"])

    def _pattern(self):
        if self._item is None:
            names = "|".join(map(re.escape, store_settings().namespaces))
            # /api/{ns}/watch is the watch stream (kvstore.api.middleware.ITEM).
            self._item = re.compile(
                rf"^/api/(?P<ns>{names})/(?!watch/?$)(?P<key>[^/]+)/?$"
            )
        return self._item

    def _learn(self, environ, start_response, namespace):
        """Let Django answer; keep its headers if it answered 200."""
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info)

        body = self.django(environ, capture)
        if seen.get("status", "").startswith("200 "):
            template = _Template(seen["headers"], _viewset(environ["PATH_INFO"]))
            with self._lock:
                self._learned.setdefault(_context(environ, namespace), template)
        return body

    def _answer(self, environ, namespace, key, template):
        """(status, headers, body) of the 200, or None for Django to answer."""
        started = time.perf_counter()
        phases = timing.begin()
        metrics.IN_PROGRESS.inc()
        try:
            if not _may_read(environ):
                return None
            read = get_repository().get(namespace, key)
        except StoreError:  # not found, not here, not now: Django says which
            return None
        finally:
            metrics.IN_PROGRESS.dec()
            timing.end()
        body = template.render(read.entry)
        total = time.perf_counter() - started
        headers = template.headers + [
            ("ETag", read.entry.version.etag),
            (POSITION, str(read.position)),
            ("Content-Length", str(len(body))),
            # "fast" tells a client (and the tests) which path answered.
            ("Server-Timing", timing.header(phases, total) + ", fast"),
        ]
        metrics.record(namespace, "GET", 200, "", phases, total)
        return "200 OK", headers, body


class _Template:
    """What a namespace's plain 200 looks like: Django's headers, and the view's way
    to represent an entry, rendered as DRF renders it."""

    _renderer = ValueJSONRenderer()
    _context = {"response": type("Ok", (), {"status_code": 200})()}

    def __init__(self, headers, viewset):
        self.headers = [(n, v) for n, v in headers if n.lower() not in OWN]
        self.represent = viewset().represent

    def render(self, entry):
        return self._renderer.render(
            self.represent(entry), "application/json", self._context
        )


def _context(environ, namespace):
    """What Django's headers may depend on besides the namespace."""
    return (
        namespace,
        environ.get("HTTP_HOST"),
        environ.get("wsgi.url_scheme"),
        environ.get("HTTP_X_FORWARDED_PROTO"),
    )


def _viewset(path):
    return resolve(path).func.cls


class _Meta:
    """The little of a Django request that `auth.identify` reads."""

    def __init__(self, environ):
        self.META = environ


def _may_read(environ):
    """Whether the caller may read (always, with KVSTORE_AUTH=off); a refusal is
    Django's to answer, with its challenge."""
    settings = store_settings()
    if not settings.auth_required:
        return True
    try:
        principal = auth.identify(_Meta(environ), settings)
    except APIException:  # an unreadable or unknown key: Django answers 401
        return False
    return principal is not None and principal.may(keys.READ)
