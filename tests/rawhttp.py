"""A bare HTTP/1.1 client for tests: sends exactly the bytes it is given (malformed
request lines, headers and bodies included), one request per connection, and parses the
answer."""

import dataclasses
import json
import socket


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict  # lower-case names; a repeated header keeps its last value
    body: bytes

    def json(self):
        return json.loads(self.body)


def request_bytes(method, target, headers=(), body=b"", host="127.0.0.1"):
    """A request's bytes: `headers` are (name, value) pairs sent as they are; Host,
    Connection: close and (with a body, unless given) Content-Length are added."""
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    if "host" not in names:
        lines.append(f"Host: {host}".encode())
    lines.append(b"Connection: close")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}".encode())
    for name, value in headers:
        line = f"{name}: {value}" if isinstance(name, str) else name + b": " + value
        lines.append(line.encode("latin-1") if isinstance(line, str) else line)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port, data, timeout=30):
    """Send raw request bytes to 127.0.0.1:`port`; the Answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = []
        while chunk := sock.recv(65536):
            received.append(chunk)
    return parse(b"".join(received))


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunked(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(int(status_line.split()[1]), headers, body)


def _dechunked(data):
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]
