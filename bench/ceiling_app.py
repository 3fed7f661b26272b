"""The floor under the store's HTTP path: WSGI apps that do nothing a key-value
store must not, served by the same gunicorn as the store (bench/ceiling.py).

- `hello`: a fixed 200 JSON answer with headers like a GET of the store's.
- `produce`: one record per request through one idempotent, acks=all, linger-0
  kafka-python producer per worker process (the store's producer settings), answered
  once the broker acknowledges it. No cache, no routing, no read-your-writes wait.
"""

import os
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
_producer = None
_lock = threading.Lock()


def hello(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


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
    answer = b'{"offset":%d}' % sent.get(10).offset
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
                bootstrap_servers=os.environ["CEILING_BOOTSTRAP"],
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
            )
        return _producer
