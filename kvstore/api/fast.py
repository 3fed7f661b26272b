"""The fast path, below Django: a plain JSON GET of one key is answered straight from
the cache when this instance serves it, or with the 307 to the instance that does, and a
plain JSON PUT of one key is written, each with exactly the answer Django would give.

A GET by key is the store's commonest request, and Django's request handling, its
middleware and DRF's view machinery cost most of its time (docs/PROFILES.md). This WSGI
application answers the plain case itself and hands everything else to Django: a
query string other than a redirect's hop count, an Accept other than JSON, a
conditional or waiting read (a `Kvstore-Min-Position` the cache does not reflect yet,
or any to a non-owner), a key that needs percent-decoding, an error, auth that would
refuse. Which headers an answer carries is not written down here but learned
from Django's own 200 (201, 307) for the same namespace, host and scheme, so whatever the
project's middleware adds (security headers, HSTS, Vary, Allow) stays identical; only
the headers that vary per answer (OWN) are the fast path's own.

A PUT is plain when its view keeps NamespaceViewSet's `update` and the fast path may run
its write hooks (kvstore.api.fastwrite's `writer`), with a JSON body the store's parser
and the view's `to_value` take, no precondition, idempotency key or position, and only
after Django has answered a PUT 200 or 201 for the same namespace, host and scheme (so
that host is one Django answers). A PUT for a key another instance owns goes to Django
before anything is written (for its 307). Otherwise it is written once, whatever the
outcome: one the fast path has not learned to answer (a 202, any error) goes on to
Django with the attempt in the environ (ATTEMPT), and the view answers with that
outcome instead of writing (`fastwrite.attempted`). Those answers, like the fast
path's own, end their `Server-Timing` in "fast".
"""

import re
import threading
import time

from rest_framework.exceptions import APIException

from kvstore import keys, metrics, positions, timing
from kvstore.api import auth, fastwrite, redirects
from kvstore.api.fastwrite import ATTEMPT
from kvstore.api.handlers import MAX_HOPS, json_response
from kvstore.api.renderers import ValueJSONRenderer
from kvstore.conf import store_settings
from kvstore.entries import NO_WAIT, Condition, Wait
from kvstore.errors import NotOwner, StoreError
from kvstore.positions import HEADER as POSITION
from kvstore.repository import get_repository

PLAIN_ACCEPT = ("", "*/*", "application/json")
# Headers whose presence makes a GET more than plain (conditional, waiting, or one
# the middleware refuses).
NOT_PLAIN = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_PREFER",
    "HTTP_TRANSFER_ENCODING",
    "HTTP_CONTENT_ENCODING",
)
# The fast path's own headers; every other one is Django's, as learned.
OWN = (
    "etag",
    POSITION.lower(),
    "content-length",
    "server-timing",
    "location",
    "x-kvstore-partition",
    "x-kvstore-owner",
    "content-type",
    "idempotent-replayed",
)
# A read-your-writes GET (the routing client sends one with every read) is plain too
# when the cache reflects the position already.
MIN_POSITION = "HTTP_" + positions.MIN_HEADER.upper().replace("-", "_")
HOPS = re.compile(r"_hop=([0-9]{1,4})")  # a redirect's only parameter, as it sends it
OK, CREATED, REDIRECT = "200 OK", "201 Created", "307 Temporary Redirect"
# Headers whose presence makes a PUT more than plain: conditional, idempotent, waiting,
# or one the middleware refuses.
WRITE_NOT_PLAIN = NOT_PLAIN + (
    "HTTP_IF_MATCH",
    "HTTP_IDEMPOTENCY_KEY",
    MIN_POSITION,
)


class FastPath:
    """WSGI middleware: `application = FastPath(get_wsgi_application())`."""

    def __init__(self, django, writes=True):
        """`writes=False` leaves every PUT to Django (for a project whose own
        middleware may refuse a write that Django answered before)."""
        self.django = django
        self._methods = {
            "GET": NOT_PLAIN,
            **({"PUT": WRITE_NOT_PLAIN} if writes else {}),
        }
        self._item = None
        self._learned = {}  # (_context, method, status line) -> _Template
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        not_plain = self._methods.get(method)
        plain = None if not_plain is None else self._plain(environ, not_plain)
        if plain is None:
            return self.django(environ, start_response)
        namespace, key, hops = plain
        context = _context(environ, namespace)
        if method == "PUT":
            answer = self._write(environ, namespace, key, context)
        else:
            answer = self._answer(environ, namespace, key, context, hops)
        if answer is None:  # Django's, which teaches what it has not learned yet
            return self._learn(environ, start_response, context)
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    def _plain(self, environ, not_plain):
        """(namespace, key, hops taken) of a plain JSON request for one key, else
        None."""
        query = environ.get("QUERY_STRING", "")
        hops = HOPS.fullmatch(query) if query else None
        if query and hops is None:
            return None
        raw = environ.get("RAW_URI", "")
        # Only a path that needs no decoding: then PATH_INFO is the key as sent.
        if not raw.isascii() or "%" in raw or raw.count("?") > bool(query):
            return None
        if environ.get("HTTP_ACCEPT", "") not in PLAIN_ACCEPT:
            return None
        if any(name in environ for name in not_plain):
            return None
        match = self._pattern().match(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        return match["ns"], match["key"], int(hops[1]) if hops else 0

    def _pattern(self):
        if self._item is None:
            names = "|".join(map(re.escape, store_settings().namespaces))
            # /api/{ns}/watch is the watch stream (kvstore.api.middleware.ITEM).
            self._item = re.compile(
                rf"^/api/(?P<ns>{names})/(?!watch/?$)(?P<key>[^/]+)/?$"
            )
        return self._item

    def _learn(self, environ, start_response, context):
        """Let Django answer; keep its headers if it answered 200 or 307."""
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info)

        body = self.django(environ, capture)
        status = seen.get("status", "")
        learned = (context, environ["REQUEST_METHOD"], status)
        if status in (OK, CREATED, REDIRECT) and learned not in self._learned:
            template = _Template(
                seen["headers"], fastwrite.viewset_of(environ["PATH_INFO"])
            )
            with self._lock:
                self._learned.setdefault(learned, template)
        return body

    def _answer(self, environ, namespace, key, context, hops):
        """(status, headers, body) of the 200 or the 307, or None for Django."""
        started = time.perf_counter()
        phases = timing.begin()
        metrics.IN_PROGRESS.inc()
        at_least = environ.get(MIN_POSITION)
        try:
            if not _may(environ, keys.READ):
                return None
            wait = NO_WAIT if at_least is None else _reached(at_least, namespace)
            read = get_repository().get(namespace, key, wait=wait)
        except NotOwner as moved:
            redirect = self._learned.get((context, "GET", REDIRECT))
            if redirect is None or hops >= MAX_HOPS or at_least is not None:
                return None  # Django answers (and shows how), or ends the loop
            answer = _redirect(environ, moved, hops, redirect)
            return self._timed(
                answer, namespace, "GET", 307, "not_owner", phases, started
            )
        except (StoreError, positions.PositionInvalid):
            return None  # not found, not now, not yet there: Django says which
        finally:
            metrics.IN_PROGRESS.dec()
            timing.end()
        template = self._learned.get((context, "GET", OK))
        if template is None:
            return None
        etag = read.entry.version.etag
        answer = template.answer(OK, read.entry, etag, read.position)
        return self._timed(answer, namespace, "GET", 200, "", phases, started)

    def _write(self, environ, namespace, key, context):
        """(status, headers, body) of a plain PUT's 200 or 201 once written, or None
        for Django: to refuse it, or (with ATTEMPT set) to answer the write's outcome.
        """
        learned = [self._learned.get((context, "PUT", s)) for s in (OK, CREATED)]
        viewset = fastwrite.writer(namespace, environ["PATH_INFO"])
        if learned == [None, None] or viewset is None:
            return None  # until Django has answered a PUT here, this host is unproven
        if not fastwrite.valid_key(key) or not _may(environ, keys.WRITE):
            return None  # Django says why
        view = viewset()
        value = fastwrite.value(environ, view)
        if value is fastwrite.REFUSED:
            return None
        started = time.perf_counter()
        phases = timing.begin()
        metrics.IN_PROGRESS.inc()
        try:
            result = get_repository().put(
                namespace,
                key,
                lambda current: view.merge(current, value, False),
                view.write_condition(Condition(), False),
            )
        except NotOwner:
            return None  # routed before anything was written: Django answers the 307
        except Exception as error:  # whatever it was, it is Django's to answer
            environ[ATTEMPT] = fastwrite.Attempt(
                namespace, key, None, error, phases, started
            )
            return None
        finally:
            metrics.IN_PROGRESS.dec()
            timing.end()
        template = learned[1] if result.created else learned[0]
        if template is None or not result.applied:
            environ[ATTEMPT] = fastwrite.Attempt(
                namespace, key, result, None, phases, started
            )
            return None
        version = result.version
        position = positions.single(namespace, version.partition, version.offset)
        status = CREATED if result.created else OK
        answer = template.answer(status, result.entry, version.etag, position)
        return self._timed(
            answer, namespace, "PUT", int(status[:3]), "", phases, started
        )

    @staticmethod
    def _timed(answer, namespace, method, status, code, phases, started):
        """The answer with its Content-Length and Server-Timing, counted."""
        total = time.perf_counter() - started
        status_line, headers, body = answer
        headers = headers + [
            ("Content-Length", str(len(body))),
            # "fast" tells a client (and the tests) which path answered.
            ("Server-Timing", timing.header(phases, total) + ", fast"),
        ]
        metrics.record(namespace, method, status, code, phases, total)
        return status_line, headers, body


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

    def answer(self, status, entry, etag, position):
        """(status, headers, body) of a 200 or 201 that carries `entry`."""
        headers = self.headers + [
            ("Content-Type", "application/json"),
            ("ETag", etag),
            (POSITION, str(position)),
        ]
        return status, headers, self.render(entry)


def _redirect(environ, moved, hops, template):
    """The 307 the redirecting middleware would answer (kvstore.api.middleware): its
    body and own headers from the same function, the rest as Django sent them."""
    path, _ = redirects.raw_target(_Meta(environ))
    location = f"{moved.owner}{path}?{redirects.HOP_PARAM}={hops + 1}"
    response = json_response(moved, location)
    own = [(name, value) for name, value in response.items()]
    own = [(n, v) for n, v in own if n.lower() != "content-length"]
    return REDIRECT, template.headers + own, response.content


def _context(environ, namespace):
    """What Django's headers may depend on besides the namespace."""
    return (
        namespace,
        environ.get("HTTP_HOST"),
        environ.get("wsgi.url_scheme"),
        environ.get("HTTP_X_FORWARDED_PROTO"),
        # What Django's host check reads instead when a project trusts proxies.
        environ.get("HTTP_X_FORWARDED_HOST"),
        environ.get("HTTP_X_FORWARDED_PORT"),
    )


class _Meta:
    """The little of a Django request that `auth.identify` reads."""

    def __init__(self, environ):
        self.META = environ


def _reached(text, namespace):
    """A Wait for a `Kvstore-Min-Position` that the cache must reflect already: one
    that it does not yet (or one that is malformed) is Django's to wait for, or to
    refuse."""
    return Wait(at_least=positions.parse(text, namespace), seconds=0)


def _may(environ, need):
    """Whether the caller may do `need` (always, with KVSTORE_AUTH=off); a refusal is
    Django's to answer, with its challenge."""
    settings = store_settings()
    if not settings.auth_required:
        return True
    try:
        principal = auth.identify(_Meta(environ), settings)
    except APIException:  # an unreadable or unknown key: Django answers 401
        return False
    return principal is not None and principal.may(need)
