"""The store as an ASGI application, for gunicorn's uvicorn worker class
(kvstore.api.loop): the same answers as config.wsgi under the threaded worker, with
less of the server's own CPU in each.

- A plain JSON GET of one key (kvstore.api.fast) is answered in the event loop: the
  fast path reads the cache without waiting, so no thread is needed.
- A PUT whose body the store would read (a Content-Length within Django's limit) has
  its body read in the event loop, and the store's WSGI application writes it in a
  thread of `writers`: one hand-off each way.
- Everything else (the browsable API, waiting reads, watch streams, refusals) runs the
  store's WSGI application through a2wsgi's bridge, in a pool with room for
  `--threads` requests and every long wait the instance allows
  (KVSTORE_MAX_WATCHES). A stream ends at its next write once its client has gone,
  or once a write has waited SEND_TIMEOUT seconds for a client that takes nothing, as
  under the threaded worker, so its slot is given back.

gunicorn's RAW_URI, which the fast path reads, is made from the request as sent.
"""

import asyncio
import io
from concurrent import futures

from a2wsgi.wsgi import WSGIMiddleware, WSGIResponder, build_environ
from django.conf import settings as django_settings

from kvstore.api.fast import MIN_POSITION, NOT_PLAIN, _context
from kvstore.api.watch import SEND_TIMEOUT

NO_BODY = b""
# Where a plain GET's scope keeps its context once the fast path has declined it in the
# event loop (a 404, a key not learned yet, a redirect past the hop limit): the bridge
# then hands it straight to Django instead of trying the fast path again.
DECLINED = "kvstore.declined"


class ClientGone(OSError):
    """A streamed answer's client closed its connection."""


class Front:
    """`application = Front(FastPath(get_wsgi_application()))`; the worker calls
    `configure` with its `--threads` and the instance's KVSTORE_MAX_WATCHES."""

    def __init__(self, fast):
        self.fast = fast
        self.configure(4, 0)

    def configure(self, threads, long_waits):
        """Pools of `threads` threads for PUTs, and `threads + long_waits` for what
        goes through the bridge (their threads are made as they are needed)."""
        self.writers = futures.ThreadPoolExecutor(threads, "kvstore-write")
        self.bridge = _Bridge(
            self._wsgi, workers=threads + long_waits, send_queue_size=1
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            answer = self._fast_get(scope)
            if answer is not None:
                await _send(send, *answer)
                return
        if scope["method"] == "PUT" and _bounded(scope):
            await self._whole(scope, receive, send)
            return
        await self.bridge(scope, receive, send)

    def _wsgi(self, environ, start_response):
        scope = environ["asgi.scope"]
        environ["RAW_URI"] = _raw_uri(scope)
        if DECLINED in scope:
            return self.fast._learn(environ, start_response, scope[DECLINED])
        return self.fast(environ, start_response)

    def _fast_get(self, scope):
        """The fast path's (status, headers, body) for a plain GET that needs no
        wait, else None (and DECLINED in the scope if the fast path said no)."""
        environ = build_environ(scope, io.BytesIO(NO_BODY))
        environ["RAW_URI"] = _raw_uri(scope)
        plain = self.fast._plain(environ, NOT_PLAIN)
        if plain is None or MIN_POSITION in environ:
            return None
        namespace, key, hops = plain
        context = _context(environ, namespace)
        answer = self.fast._answer(environ, namespace, key, context, hops)
        if answer is None:
            scope[DECLINED] = context
        return answer

    async def _whole(self, scope, receive, send):
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nothing was written
            chunks.append(message.get("body", NO_BODY))
            if not message.get("more_body"):
                break
        environ = build_environ(scope, io.BytesIO(NO_BODY.join(chunks)))
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.writers, self._answer, environ)
        await _send(send, *answer)

    def _answer(self, environ):
        """(status, headers, body) of the WSGI application's answer."""
        started = {}

        def start_response(status, headers, exc_info=None):
            started["status"], started["headers"] = status, headers

        result = self._wsgi(environ, start_response)
        try:
            body = NO_BODY.join(result)
        finally:
            getattr(result, "close", lambda: None)()
        return started["status"], started["headers"], body


class _Bridge(WSGIMiddleware):
    async def __call__(self, scope, receive, send):
        responder = _Responder(self.app, self.executor, self.send_queue_size)
        try:
            await responder(scope, receive, send)
        except ClientGone:
            pass  # the stream ended at its first write after its client left


class _Responder(WSGIResponder):
    """a2wsgi's responder, which also ends a bodiless request's answer (a watch
    stream, a long-poll) at its first write after the client has gone."""

    gone = False

    async def __call__(self, scope, receive, send):
        if _has_body(scope):
            await super().__call__(scope, receive, send)
            return
        first = await receive()  # the (empty) request itself
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))

        async def replay():
            return first

        try:
            await super().__call__(scope, replay, send)
        finally:
            watcher.cancel()

    async def _watch(self, receive):
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True

    def send(self, message):
        """Hand `message` to the event loop to write; a client that has gone, or
        has taken nothing for SEND_TIMEOUT seconds (the bridge queues one message
        at most), ends the answer here."""
        if self.gone and message is not None:
            raise ClientGone("the client closed the connection")
        future = asyncio.run_coroutine_threadsafe(
            self.send_queue.put(message), self.loop
        )
        try:
            future.result(SEND_TIMEOUT)
        except futures.TimeoutError:
            future.cancel()
            self.gone = True
            raise ClientGone("the client took nothing for %d s" % SEND_TIMEOUT)


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send, status, headers, body):
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


def _raw_uri(scope):
    """The request target as sent (gunicorn's RAW_URI)."""
    query = scope["query_string"]
    raw = scope.get("raw_path") or scope["path"].encode()
    return (raw + (b"?" + query if query else NO_BODY)).decode("latin-1")


def _bounded(scope):
    """Whether a request declares a body the store would read: a Content-Length
    within Django's limit and no Transfer-Encoding. Any other is the store's to
    refuse before its body arrives, so it goes through the bridge."""
    length, coded = _framing(scope)
    return (
        not coded
        and length is not None
        and length.isdigit()
        and int(length) <= django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )


def _has_body(scope):
    length, coded = _framing(scope)
    return coded or (length is not None and length != b"0")


def _framing(scope):
    """(its Content-Length or None, whether it has a Transfer-Encoding) of a request."""
    length, coded = None, False
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            coded = True
        elif name == b"content-length":
            length = value
    return length, coded
