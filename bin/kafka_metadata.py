#!/usr/bin/env python3
"""Ask a Kafka broker for cluster metadata, with the standard library only.

Used by bin/kafka-local to tell when a broker really serves clients (not merely that its
port is open). Exit 0 and print "brokers=N controller=ID" when the broker answers a
Metadata request listing at least the expected number of live brokers; exit 1 otherwise.
"""
import argparse
import socket
import struct
import sys

METADATA_API_KEY = 3
METADATA_VERSION = (
    4  # the oldest version Kafka 4.x still accepts; non-flexible, easy to parse
)


def _request(correlation_id):
    client_id = b"kafka-local"
    header = struct.pack(
        ">hhih", METADATA_API_KEY, METADATA_VERSION, correlation_id, len(client_id)
    )
    body = struct.pack(">i?", -1, False)  # all topics, never auto-create
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def _read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value[0]

    def string(self):
        size = self.take(">h")
        if size < 0:
            return None
        text = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return text


def metadata(host, port, timeout):
    """Return (broker count, controller id) from one Metadata v4 round trip."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_request(correlation_id=7))
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        reader = _Reader(_read_exactly(sock, size))
    if reader.take(">i") != 7:
        raise ConnectionError("unexpected correlation id")
    reader.take(">i")  # throttle_time_ms
    brokers = reader.take(">i")
    for _ in range(brokers):
        reader.take(">i")
        reader.string()
        reader.take(">i")
        reader.string()
    reader.string()  # cluster id
    return brokers, reader.take(">i")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port")
    parser.add_argument("--brokers", type=int, default=1, help="live brokers required")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    try:
        brokers, controller = metadata(host, int(port), args.timeout)
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        print(f"no answer from {args.address}: {exc}", file=sys.stderr)
        return 1
    print(f"brokers={brokers} controller={controller}")
    return 0 if brokers >= args.brokers else 1


if __name__ == "__main__":
    sys.exit(main())
