"""The floor under the store's HTTP path: WSGI apps that do nothing a key-value
store must not, served by the same gunicorn as the store (bench/ceiling.py).

- `hello`: a fixed 200 JSON answer with headers like a GET of the store's
  (`hello_asgi`: the same under the store's worker class, kvstore.api.loop).
- `produce`: one record per request through one idempotent, acks=all, linger-0
  kafka-python producer per worker process (the store's producer settings), answered
  once the broker acknowledges it. No cache, no routing, no read-your-writes wait.
- `relay`: the same, through one producer for all the workers, in another process
  (bench/ceiling_relay.py, over a Unix socket per worker thread): what "one producer
  per instance" would allow.
"""

import os
import socket
import struct
import threading
import zlib

from kafka import KafkaProducer

BODY = b'{"n":1,"pad":"' + b"x" * 70 + b'"}'
HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
    ("ETag", '"1"'),
    ("Kvstore-Position", "0:1"),
    ("Server-Timing", "total;dur=0.1"),
    ("Vary", "Accept, Cookie"),
]
ASGI_HEADERS = [(name.lower().encode(), value.encode()) for name, value in HEADERS]
PRODUCER_SETTINGS = dict(
    acks="all", enable_idempotence=True, linger_ms=0, metrics_enabled=False
)
# A request to bench/ceiling_relay.py: key and value lengths, then the key and the
# value. Its answer: the record's offset, or -1 when it failed.
RELAY_HEAD = struct.Struct("!HI")
RELAY_OFFSET = struct.Struct("!q")
_producer = None
_lock = threading.Lock()
_relayed = threading.local()


def hello(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


async def hello_asgi(scope, receive, send):
    """`hello` as an ASGI app, for the store's worker class (kvstore.api.loop)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": ASGI_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def produce(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    key = environ["PATH_INFO"].encode()
    partitions = int(os.environ["CEILING_PARTITIONS"])
    sent = producer().send(
        os.environ["CEILING_TOPIC"],
        key=key,
        value=body,
        partition=zlib.crc32(key) % partitions,
    )
    return _created(sent.get(10).offset, start_response)


def relay(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    key = environ["PATH_INFO"].encode()
    conn = getattr(_relayed, "conn", None)
    if conn is None:
        conn = _relayed.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(os.environ["CEILING_RELAY"])
    conn.sendall(RELAY_HEAD.pack(len(key), len(body)) + key + body)
    answer = b""
    while len(answer) < RELAY_OFFSET.size:
        got = conn.recv(RELAY_OFFSET.size - len(answer))
        if not got:
            raise ConnectionError("the relay went away")
        answer += got
    (offset,) = RELAY_OFFSET.unpack(answer)
    if offset < 0:
        raise RuntimeError("the relay's producer failed")
    return _created(offset, start_response)


def _created(offset, start_response):
    answer = b'{"offset":%d}' % offset
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]


def producer():
    """This worker's producer, made on its first request (after gunicorn's fork)."""
    global _producer
    with _lock:
        if _producer is None:
            _producer = KafkaProducer(
                bootstrap_servers=os.environ["CEILING_BOOTSTRAP"], **PRODUCER_SETTINGS
            )
        return _producer
