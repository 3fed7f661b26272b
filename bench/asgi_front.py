"""A prototype, for bench/asgi.py only: the store served by gunicorn's uvicorn worker
class (`-k uvicorn_worker.UvicornWorker`, an ASGI event loop with a C HTTP parser)
instead of its threaded worker. Not how the store is deployed (docs/PROFILES.md §11
says what adopting it would take).

- `store`: a plain JSON GET of one key is answered by the store's own fast path
  (kvstore.api.fast) in the event loop, with the same answer and headers it gives
  under the threaded worker. A PUT's body is read in the event loop, and the store's
  WSGI application (its fast path included) writes it in a thread of a pool, one
  hand-off each way (`_whole`: a2wsgi's bridge, which hands off every chunk, cost
  the PUT about a fifth more CPU). Every other request (the browsable API, watch
  streams, errors) goes to the store's WSGI application through a2wsgi's bridge.
- `hello`: bench/ceiling_app.py's fixed answer, as an ASGI app: the floor of this
  worker class, as `hello` is the threaded worker's.
"""

import asyncio
import io
from concurrent import futures

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from django.conf import settings as django_settings

from bench.ceiling_app import BODY, HEADERS
from config.wsgi import application as fast
from kvstore.api.fast import MIN_POSITION, NOT_PLAIN, _context

# PUTs are written by as many threads per worker as the threaded worker has; the
# bridge has room for a few long waits (watch streams) besides.
THREADS = 4
BRIDGE_THREADS = 8
NO_BODY = io.BytesIO(b"")
HELLO = [(name.lower().encode(), value.encode()) for name, value in HEADERS]


def _raw_uri(environ):
    """gunicorn's RAW_URI (the request target as sent), which the fast path reads to
    leave a path that needs percent-decoding to Django."""
    scope = environ["asgi.scope"]
    query = scope["query_string"]
    raw = scope.get("raw_path") or scope["path"].encode()
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


def _with_raw_uri(environ, start_response):
    environ["RAW_URI"] = _raw_uri(environ)
    return fast(environ, start_response)


bridge = WSGIMiddleware(_with_raw_uri, workers=BRIDGE_THREADS)
pool = futures.ThreadPoolExecutor(THREADS)


async def store(scope, receive, send):
    if scope["type"] != "http":
        return  # the lifespan protocol: nothing to start or stop
    if scope["method"] == "GET":
        answer = _fast_get(scope)
        if answer is not None:
            status, headers, body = answer
            await send(
                {
                    "type": "http.response.start",
                    "status": int(status[:3]),
                    "headers": [
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in headers
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
    if scope["method"] == "PUT" and _bounded(scope):
        await _whole(scope, receive, send)
        return
    await bridge(scope, receive, send)


def _bounded(scope):
    """Whether a request declares a body the store would read (a Content-Length no
    larger than Django's limit, no Transfer-Encoding): any other is the store's to
    refuse before its body arrives, so it goes through the bridge."""
    length = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return False
        if name == b"content-length":
            length = value
    return (
        length is not None
        and length.isdigit()
        and int(length) <= django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )


async def _whole(scope, receive, send):
    """The store's WSGI application for a request whose answer is never a stream (a
    PUT): the body read here, the application run in a thread of `pool`, its answer
    sent here, with one hand-off each way and none per chunk."""
    body = []
    while True:
        message = await receive()
        body.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    environ = build_environ(scope, io.BytesIO(b"".join(body)))
    answer = await asyncio.get_running_loop().run_in_executor(pool, _run, environ)
    status, headers, chunks = answer
    await send(
        {
            "type": "http.response.start",
            "status": int(status[:3]),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": chunks})


def _run(environ):
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, headers

    result = _with_raw_uri(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started["status"], started["headers"], body


def _fast_get(scope):
    """The fast path's (status, headers, body) for a plain GET, else None. It reads
    the cache without waiting (a GET that would wait is not plain)."""
    environ = build_environ(scope, NO_BODY)
    environ["RAW_URI"] = _raw_uri(environ)
    plain = fast._plain(environ, NOT_PLAIN)
    if plain is None or MIN_POSITION in environ:
        return None
    namespace, key, hops = plain
    return fast._answer(environ, namespace, key, _context(environ, namespace), hops)


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HELLO})
    await send({"type": "http.response.body", "body": BODY})
