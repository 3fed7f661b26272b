"""One producer for every web worker of a host: the process behind
bench/ceiling_app.py:`relay`, for measuring what "one producer per instance" would
allow (docs/PROFILES.md §10), not a part of the store.

    python bench/ceiling_relay.py SOCKET BOOTSTRAP TOPIC PARTITIONS

Listens on the Unix socket SOCKET. Each connection carries one request at a time:
a head (key length, value length), the key and the value; the answer is the record's
offset once the broker has acknowledged it (acks=all), or -1 when it failed. One
thread reads every connection (a selector); kafka-python's I/O thread answers them.
"""

import os
import selectors
import socket
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ceiling_app import PRODUCER_SETTINGS  # noqa: E402
from bench.ceiling_app import RELAY_HEAD as HEAD  # noqa: E402
from bench.ceiling_app import RELAY_OFFSET as OFFSET  # noqa: E402
from kafka import KafkaProducer  # noqa: E402


def serve(path, bootstrap, topic, partitions):
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(128)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending = {}  # connection -> bytes read and not yet a whole request

    def answer(conn, offset):
        try:
            conn.sendall(OFFSET.pack(offset))
        except OSError:
            pass  # the worker went away; its request is its own to judge

    while True:
        for ready, _ in selector.select():
            if ready.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                pending[conn] = b""
                continue
            conn = ready.fileobj
            data = conn.recv(65536)
            if not data:
                selector.unregister(conn)
                del pending[conn]
                conn.close()
                continue
            buffer = pending[conn] + data
            while len(buffer) >= HEAD.size:
                key_length, value_length = HEAD.unpack_from(buffer)
                end = HEAD.size + key_length + value_length
                if len(buffer) < end:
                    break
                key = buffer[HEAD.size : HEAD.size + key_length]
                value = buffer[HEAD.size + key_length : end]
                buffer = buffer[end:]
                sent = producer.send(
                    topic,
                    key=key,
                    value=value,
                    partition=zlib.crc32(key) % partitions,
                )
                sent.add_callback(lambda meta, c=conn: answer(c, meta.offset))
                sent.add_errback(lambda _, c=conn: answer(c, -1))
            pending[conn] = buffer


if __name__ == "__main__":
    path, bootstrap, topic, partitions = sys.argv[1:5]
    serve(path, bootstrap, topic, int(partitions))
