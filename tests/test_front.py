"""The ASGI front (kvstore.api.front) in process, over a fast path that records what it
is asked: which way each request goes. What the answers are is tested against real
instances (test_api.py's TestFastPath, test_bad_input.py, test_watch.py)."""

import asyncio

import pytest

from kvstore.api import front
from kvstore import positions


class Recorder:
    """A fast path whose GETs are all plain and declined (as a 404 is)."""

    def __init__(self):
        self.calls = []

    def _plain(self, environ, not_plain):
        return ("kv", "k", 0)

    def _answer(self, environ, namespace, key, context, hops):
        self.calls.append("fast")
        return None

    def _learn(self, environ, start_response, context):
        self.calls.append(("django", context[0]))
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"code":"not_found"}']

    def __call__(self, environ, start_response):
        self.calls.append("fast path again")
        return self._learn(environ, start_response, ("kv",))


def get(application, headers=()):
    """The status and body `application` answers a GET of /api/kv/k with."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/kv/k",
        "raw_path": b"/api/kv/k",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
    }
    sent, requests = [], [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():  # the request, then nothing until the test ends
        if requests:
            return requests.pop()
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_a_get_the_fast_path_declined_goes_straight_to_django():
    fast = Recorder()
    status, body = get(front.Front(fast))
    assert (status, body) == (404, b'{"code":"not_found"}')
    assert fast.calls == ["fast", ("django", "kv")]


def test_a_get_that_must_wait_is_left_to_the_fast_path_in_a_thread():
    fast = Recorder()
    waiting = (positions.MIN_HEADER.lower().encode(), b"0-1")
    status, _ = get(front.Front(fast), [waiting])
    assert status == 404
    assert fast.calls == ["fast path again", ("django", "kv")]


@pytest.mark.parametrize(
    "headers, bounded, has_body",
    [
        ([], False, False),
        ([(b"content-length", b"0")], True, False),
        ([(b"content-length", b"12")], True, True),
        ([(b"content-length", b"12"), (b"transfer-encoding", b"chunked")], False, True),
        ([(b"transfer-encoding", b"chunked")], False, True),
        ([(b"content-length", b"99999999")], False, True),
        ([(b"content-length", b"+12")], False, True),
    ],
)
def test_which_requests_have_a_body_the_store_reads_whole(
    headers, bounded, has_body, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {"headers": headers}
    assert front._bounded(scope) is bounded
    assert front._has_body(scope) is has_body
