"""Bad input, generated: hundreds of malformed keys, bodies, headers, query parameters,
methods, transfer encodings and request lines, sent byte for byte to one real instance.

Every one must get a 4xx (no 5xx: on a healthy instance none of these is a documented
503), a JSON body with the expected stable `code`, and leave every namespace topic's end
offsets as they were: a refused request writes nothing. Cases marked `gunicorn` are
refused by gunicorn before Django sees them; its worker (kvstore/api/server.py) answers
them in the same JSON shape, and `test_the_suite_counts_what_gunicorn_refuses` states
how many there are.
"""

import dataclasses
import socket
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition

from kvstore import log, topics, values
from tests import rawhttp
from tests.instances import Instance, isolated_settings

MAX_MESSAGE_BYTES = 20000
KV_ITEM = "/api/kv/bad-input-item"  # exists (setup), so conditions have a target
KV_NEW = "/api/kv/bad-input-new"  # never exists
USERS = "/api/users/"
USER = "/api/users/{user}"  # an existing user, filled in by the fixture
JSON = ("Content-Type", "application/json")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad request and its expected refusal."""

    name: str
    method: str
    target: str
    headers: tuple = ()
    body: bytes = b""
    status: int = 400
    code: str = "parse_error"
    gunicorn: bool = False  # refused by gunicorn itself, before Django
    raw: bytes = None  # the whole request, when it cannot be composed

    def bytes(self, user):
        if self.raw is not None:
            return self.raw
        target = self.target.replace("{user}", user)
        return rawhttp.request_bytes(self.method, target, self.headers, self.body)


def _cases(category, *cases):
    return [dataclasses.replace(c, name=f"{category}:{c.name}") for c in cases]


# --- keys ---------------------------------------------------------------------------

BAD_KEYS = {
    "256-bytes": "x" * 256,
    "128-e-acute": "%C3%A9" * 128,
    "64-emoji": "%F0%9F%98%80" * 64,
    "nul": "a%00b",
    "soh": "a%01",
    "tab": "tab%09",
    "newline": "a%0Ab",
    "cr": "a%0Db",
    "unit-sep": "%1F",
    "del": "a%7F",
    "c1-control": "a%C2%80",
    "c1-csi": "%C2%9B",
    "invalid-ff": "%FF",
    "invalid-fe": "a%FEb",
    "overlong-nul": "%C0%80",
    "overlong-slash": "%C0%AF",
    "encoded-surrogate": "a%ED%A0%80",
    "encoded-low-surrogate": "%ED%BF%BF",
    "past-unicode": "%F4%90%80%80",
    "truncated": "a%E2%82",
    "lone-continuation": "%80",
}


def key_cases():
    cases = []
    for label, key in BAD_KEYS.items():
        for method, prefix, body in [
            ("GET", "/api/kv/", b""),
            ("PUT", "/api/kv/", b"1"),
            ("DELETE", "/api/kv/", b""),
            ("GET", USERS, b""),
            ("PUT", USERS, b'{"name": "A", "email": "a@example.com"}'),
            ("PATCH", USERS, b'{"name": "A"}'),
            ("DELETE", USERS, b""),
        ]:
            headers = (JSON,) if body else ()
            cases.append(
                Case(
                    f"{label}-{method}-{prefix.split('/')[2]}",
                    method,
                    prefix + key,
                    headers,
                    body,
                    code="invalid_key",
                )
            )
    for label, raw_key in [("raw-0x80", b"\x80"), ("raw-utf8", b"\xc3\xa9")]:
        raw = b"GET /api/kv/" + raw_key + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        cases.append(Case(label, "GET", "", raw=raw, code="bad_request", gunicorn=True))
    # A key cannot hold "/": its percent-encoding names another URL.
    cases.append(
        Case("encoded-slash", "PUT", "/api/kv/a%2Fb", (JSON,), b"1", 404, "not_found")
    )
    return _cases("key", *cases)


# --- bodies -------------------------------------------------------------------------

MALFORMED = [
    b"",
    b" ",
    b"{",
    b"[1,",
    b"[1,]",
    b'{"a":1,}',
    b"'x'",
    b"{a: 1}",
    b"tru",
    b"nul",
    b"01",
    b"1 2",
    b"[] []",
    b"\x00",
    b"/* c */ 1",
    b"1 // c",
    b'"\\x41"',
    b'"tab\there"',
    b"\xef\xbb\xbf1",  # a byte-order mark
    b'"\xff"',  # not UTF-8
    b'"\xc0\x80"',
    b'"\xed\xa0\x80"',  # a UTF-8-encoded surrogate
    b"1" * 5000,  # past Python's integer digits limit
]
REFUSED = {
    "nesting_too_deep": [
        b"[" * 513 + b"]" * 513,
        b'{"a":' * 600 + b"1" + b"}" * 600,
        b"[" * 990 + b"]" * 990,
        b"[" * 1000 + b"]" * 1000,
        b"[" * 100000 + b"]" * 100000,
        b"[" * 3000,  # and unclosed
        b'{"name": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ],
    "non_finite_number": [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"-1e400",
        b"[1E+999]",
        b'{"name": NaN, "email": "a@example.com"}',
        b'{"name": "A", "n": 1e999}',
    ],
    "unpaired_surrogate": [
        b'"\\ud800"',
        b'"\\udfff"',
        b'["x\\ud800y"]',
        b'{"\\ud800": 1}',
        b'"\\udc00\\ud800"',  # a pair in the wrong order
        b'{"name": "\\ud83d", "email": "a@example.com"}',
    ],
}
WRITES = [
    ("PUT", KV_NEW),
    ("POST", USERS),
    ("PUT", USER),
    ("PATCH", USER),
]


def body_cases():
    cases = []
    for method, target in WRITES:
        where = f"{method}-{target.split('/')[2]}"
        for i, body in enumerate(MALFORMED):
            cases.append(Case(f"malformed-{i}-{where}", method, target, (JSON,), body))
        for code, bodies in REFUSED.items():
            for i, body in enumerate(bodies):
                cases.append(
                    Case(
                        f"{code}-{i}-{where}", method, target, (JSON,), body, code=code
                    )
                )
    for body in [
        b"[]",
        b"1",
        b'"x"',
        b"null",
        b"{}",
        b'{"name": ["A"], "email": "a@example.com"}',
        b'{"name": "A", "email": "not-an-address"}',
        b'{"name": "a\\u0000", "email": "a@example.com"}',
        b'{"name": "' + b"n" * 201 + b'", "email": "a@example.com"}',
    ]:
        cases.append(
            Case(
                f"invalid-user-{body[:12]!r}",
                "POST",
                USERS,
                (JSON,),
                body,
                code="invalid",
            )
        )
    cases += [
        Case(
            "too-large-record",
            "PUT",
            KV_NEW,
            (JSON,),
            b'"' + b"x" * MAX_MESSAGE_BYTES + b'"',
            413,
            "record_too_large",
        ),
        Case(
            "too-large-declared-kv",
            "PUT",
            KV_NEW,
            (JSON, ("Content-Length", "99999999")),
            b"1",
            413,
            "body_too_large",
        ),
        Case(
            "too-large-declared-users",
            "POST",
            USERS,
            (JSON, ("Content-Length", "99999999")),
            b"1",
            413,
            "body_too_large",
        ),
        Case("empty-with-length-0", "PUT", KV_NEW, (JSON, ("Content-Length", "0"))),
    ]
    return _cases("body", *cases)


# --- headers ------------------------------------------------------------------------

BAD_IF_MATCH = [
    "",
    ",",
    " , ",
    "abc",
    "0-0",
    '"0-0" junk',
    '*, "0-0"',
    "W/",
    '"open',
    '""x',
    "**",
]
BAD_IF_NONE_MATCH = ["", '"0-0"', "abc", "*, *", "W/*"]
BAD_HOSTS = [
    "evil.example",
    "evil.example:80",
    "127.0.0.1.evil.example",
    "",
    "127.0.0.1@evil",
    "127.0.0.1 evil",
    "[::1",
]
BAD_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "json",
    "application/json; charset=utf-16",
]


def header_cases():
    cases = []
    for i, tag in enumerate(BAD_IF_MATCH):
        for method, target, body in [
            ("PUT", KV_ITEM, b"2"),
            ("DELETE", KV_ITEM, b""),
            ("PATCH", USER, b'{"name": "B"}'),
        ]:
            cases.append(
                Case(
                    f"if-match-{i}-{method}",
                    method,
                    target,
                    (JSON, ("If-Match", tag)),
                    body,
                    code="invalid_precondition",
                )
            )
    for i, tag in enumerate(BAD_IF_NONE_MATCH):
        for method, target, body in [
            ("PUT", KV_NEW, b"2"),
            ("PUT", USER, b'{"name": "B", "email": "b@example.com"}'),
        ]:
            cases.append(
                Case(
                    f"if-none-match-{i}-{method}-{target.split('/')[2]}",
                    method,
                    target,
                    (JSON, ("If-None-Match", tag)),
                    body,
                    code="invalid_precondition",
                )
            )
    for i, host in enumerate(BAD_HOSTS):
        for method, target, body in [
            ("GET", "/api/kv/", b""),
            ("GET", KV_ITEM, b""),
            ("PUT", KV_NEW, b"1"),
            ("POST", USERS, b'{"name": "A", "email": "a@example.com"}'),
        ]:
            cases.append(
                Case(
                    f"host-{i}-{method}-{target}",
                    method,
                    target,
                    (("Host", host), JSON),
                    body,
                    code="disallowed_host",
                )
            )
    for i, kind in enumerate(BAD_TYPES):
        code = "parse_error" if "utf-16" in kind else "unsupported_media_type"
        status = 400 if "utf-16" in kind else 415
        cases.append(
            Case(
                f"content-type-{i}",
                "PUT",
                KV_NEW,
                (("Content-Type", kind),),
                b"1",
                status,
                code,
            )
        )
        cases.append(
            Case(
                f"content-type-{i}-users",
                "POST",
                USERS,
                (("Content-Type", kind),),
                b'{"name": "A", "email": "a@example.com"}',
                status,
                code,
            )
        )
    cases.append(
        Case("no-content-type", "PUT", KV_NEW, (), b"1", 415, "unsupported_media_type")
    )
    for coding in ["gzip", "br", "deflate, gzip"]:
        cases.append(
            Case(
                f"content-encoding-{coding}",
                "PUT",
                KV_NEW,
                (JSON, ("Content-Encoding", coding)),
                b"1",
                415,
                "unsupported_media_type",
            )
        )
    for accept in ["application/xml", "text/csv"]:
        cases.append(
            Case(
                f"accept-{accept}-list",
                "GET",
                "/api/kv/",
                (("Accept", accept),),
                status=406,
                code="not_acceptable",
            )
        )
        cases.append(
            Case(
                f"accept-{accept}-put",
                "PUT",
                KV_NEW,
                (JSON, ("Accept", accept)),
                b"1",
                406,
                "not_acceptable",
            )
        )
    gunicorn = [
        ("content-length-abc", (("Content-Length", "abc"),)),
        ("content-length-negative", (("Content-Length", "-1"),)),
        ("content-length-list", (("Content-Length", "1, 1"),)),
        ("content-length-plus", (("Content-Length", "+1"),)),
        ("content-length-twice", (("Content-Length", "1"), ("Content-Length", "1"))),
        ("host-twice", (("Host", "127.0.0.1"), ("Host", "127.0.0.1"))),
        ("content-type-twice", (JSON, JSON)),
        ("name-with-space", (("Bad Header", "1"),)),
        ("name-empty", (("", "1"),)),
        ("name-with-colon-only", ((b"X-A\x00", b"1"),)),
        ("value-nul", ((b"X-A", b"a\x00b"),)),
        ("value-control", ((b"X-A", b"a\x01b"),)),
        ("value-del", ((b"X-A", b"a\x7fb"),)),
        ("value-bare-cr", ((b"X-A", b"a\rb"),)),
    ]
    for label, headers in gunicorn:
        cases.append(
            Case(label, "PUT", KV_NEW, headers, b"1", code="bad_request", gunicorn=True)
        )
    cases.append(
        Case(
            "folded-line",
            "PUT",
            KV_NEW,
            raw=b"PUT /api/kv/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n b\r\n"
            b"Content-Length: 1\r\n\r\n1",
            code="bad_request",
            gunicorn=True,
        )
    )
    cases.append(
        Case(
            "no-colon",
            "PUT",
            KV_NEW,
            raw=b"PUT /api/kv/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A a\r\n"
            b"Content-Length: 1\r\n\r\n1",
            code="bad_request",
            gunicorn=True,
        )
    )
    cases.append(
        Case(
            "value-9000-bytes",
            "GET",
            "/api/kv/",
            (("X-A", "a" * 9000),),
            status=431,
            code="headers_too_large",
            gunicorn=True,
        )
    )
    cases.append(
        Case(
            "120-headers",
            "GET",
            "/api/kv/",
            tuple((f"X-{i}", "1") for i in range(120)),
            status=431,
            code="headers_too_large",
            gunicorn=True,
        )
    )
    cases.append(
        Case(
            "expect-unknown",
            "PUT",
            KV_NEW,
            (JSON, ("Expect", "foo")),
            b"1",
            417,
            "expectation_failed",
            gunicorn=True,
        )
    )
    return _cases("header", *cases)


# --- query parameters ---------------------------------------------------------------

BAD_NUMBERS = [
    "0",
    "-1",
    "abc",
    "%C2%B2",
    "%E2%91%A0",
    "%D9%A1",
    "1.5",
    "%201",
    "1%20",
    "1e3",
    "",
    "9" * 30,
    "0x10",
    "%2B5",
    "1_000",
]


def query_cases():
    cases = []
    for i, raw in enumerate(BAD_NUMBERS + ["1001"]):
        for target in ["/api/kv/", USERS]:
            cases.append(
                Case(
                    f"limit-{i}-{target.split('/')[2]}", "GET", f"{target}?limit={raw}"
                )
            )
    for i, raw in enumerate(BAD_NUMBERS + ["1002"]):  # a peer may ask for one more
        cases.append(
            Case(
                f"internal-limit-{i}",
                "GET",
                f"/api/internal/entries/kv?partitions=0&limit={raw}",
            )
        )
    for i, raw in enumerate(BAD_NUMBERS[2:] + ["1,,2", "1;2", "0,-1", "0,%C2%B2"]):
        cases.append(
            Case(f"partitions-{i}", "GET", f"/api/internal/entries/kv?partitions={raw}")
        )
    for i, raw in enumerate(["99", "0,99", "99999999"]):  # past the topic's count
        cases.append(
            Case(
                f"partitions-beyond-{i}",
                "GET",
                f"/api/internal/entries/kv?partitions={raw}",
                code="invalid_partition",
            )
        )
    for i, raw in enumerate(
        [
            "x",
            "%C2%B2",
            "%E2%91%A0",
            "-1",
            "1.0",
            "",
            "99999",
            "1&_hop=1",
            "%2B1",
            "0x1",
        ]
    ):
        for method, target, body in [
            ("GET", KV_ITEM, b""),
            ("PUT", KV_NEW, b"1"),
            ("DELETE", KV_ITEM, b""),
            ("PATCH", USER, b'{"name": "C"}'),
        ]:
            headers = (JSON,) if body else ()
            cases.append(
                Case(f"hop-{i}-{method}", method, f"{target}?_hop={raw}", headers, body)
            )
    for i, raw in enumerate(["weak", "", "STRONG", "strong%20", "cache,strong"]):
        cases.append(Case(f"consistency-{i}", "GET", f"{KV_ITEM}?consistency={raw}"))
    for fmt in ["xml", "yaml", "csv"]:
        cases.append(
            Case(
                f"format-{fmt}-list",
                "GET",
                f"/api/kv/?format={fmt}",
                status=404,
                code="not_found",
            )
        )
        cases.append(
            Case(
                f"format-{fmt}-put",
                "PUT",
                f"{KV_NEW}?format={fmt}",
                (JSON,),
                b"1",
                404,
                "not_found",
            )
        )
    return _cases("query", *cases)


# --- methods ------------------------------------------------------------------------


def method_cases():
    cases = []
    not_allowed = {
        KV_ITEM: ["POST", "PATCH", "TRACE", "PROPFIND", "FOO", "CONNECT"],
        KV_NEW: ["POST", "PATCH"],
        "/api/kv/": ["PUT", "POST", "PATCH", "DELETE"],
        USERS: ["PUT", "PATCH", "DELETE", "TRACE"],
        USER: ["POST", "TRACE"],
        "/healthz": ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
        "/readyz": ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        "/api/cluster": ["POST", "PUT", "DELETE"],
    }
    for target, methods in not_allowed.items():
        for method in methods:
            cases.append(
                Case(
                    f"{method}-{target}",
                    method,
                    target,
                    (JSON,),
                    b"1",
                    405,
                    "method_not_allowed",
                )
            )
    for method in ["get", "Put", "G@T", "GET\x01"]:
        cases.append(
            Case(
                f"malformed-{method!r}",
                method,
                "/api/kv/",
                code="bad_request",
                gunicorn=True,
            )
        )
    return _cases("method", *cases)


# --- transfer encodings and request lines -------------------------------------------

CHUNKED = (("Transfer-Encoding", "chunked"),)


def framing_cases():
    chunk = b"1\r\n1\r\n0\r\n\r\n"
    cases = [
        Case(
            f"chunked-{i}-{method}-{target.split('/')[2]}",
            method,
            target,
            CHUNKED + (JSON,),
            body,
            411,
            "length_required",
        )
        for i, (method, target, body) in enumerate(
            [
                ("PUT", KV_NEW, chunk),
                ("PUT", KV_ITEM, chunk),
                ("POST", USERS, b"2\r\n{}\r\n0\r\n\r\n"),
                ("PATCH", USER, b"2\r\n{}\r\n0\r\n\r\n"),
                ("PUT", USER, b"2\r\n{}\r\n0\r\n\r\n"),
                ("DELETE", KV_ITEM, b"0\r\n\r\n"),
                ("GET", KV_ITEM, b"0\r\n\r\n"),
                ("GET", "/api/kv/", b"0\r\n\r\n"),
                ("PUT", KV_NEW, b"zz\r\n1\r\n0\r\n\r\n"),
                ("PUT", KV_NEW, b"1;ext=1\r\n1\r\n0\r\n\r\n"),
            ]
        )
    ]
    # Chunked last: gunicorn decodes it; the store refuses it as any chunked body.
    cases.append(
        Case(
            "coding-gzip-then-chunked",
            "PUT",
            KV_NEW,
            (("Transfer-Encoding", "gzip, chunked"), JSON),
            b"1\r\n1\r\n0\r\n\r\n",
            411,
            "length_required",
        )
    )
    for coding, code in [
        ("gzip", "bad_request"),
        ("identity", "bad_request"),
        ("chunked, gzip", "bad_request"),
        ("chunked, chunked", "bad_request"),
        ("x", "unsupported_transfer_coding"),
        ("x-custom, chunked", "unsupported_transfer_coding"),
    ]:
        cases.append(
            Case(
                f"coding-{coding}",
                "PUT",
                KV_NEW,
                (("Transfer-Encoding", coding), JSON),
                b"1",
                code=code,
                gunicorn=True,
            )
        )
    cases.append(
        Case(
            "chunked-and-length",
            "PUT",
            KV_NEW,
            (("Transfer-Encoding", "chunked"), ("Content-Length", "5"), JSON),
            chunk,
            code="bad_request",
            gunicorn=True,
        )
    )
    lines = {
        "http-2": b"GET /api/kv/ HTTP/2.0",
        "http-0.9": b"GET /api/kv/",
        "no-target": b"GET  HTTP/1.1",
        "relative-target": b"GET api/kv/ HTTP/1.1",
        "tls-hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        "control-in-target": b"GET /api/kv/\x01 HTTP/1.1",
        "star-not-options": b"GET * HTTP/1.1",
    }
    for label, line in lines.items():
        cases.append(
            Case(
                label,
                "GET",
                "",
                raw=line + b"\r\nHost: 127.0.0.1\r\n\r\n",
                code="bad_request",
                gunicorn=True,
            )
        )
    cases.append(
        Case(
            "uri-5000",
            "GET",
            "/api/kv/" + "a" * 5000,
            status=414,
            code="uri_too_long",
            gunicorn=True,
        )
    )
    return _cases("framing", *cases)


# --- positions, waits, prefixes, watches, idempotency keys ---------------------------

BAD_POSITIONS = [
    "",
    "kv",
    "kv:0",
    "kv:0:x",
    "kv:-1:0",
    "kv:0:1,0:2",
    "users:0:1",
    "kv:9:1",
]
BAD_TOKENS = ["", "with space", "tab\there", "x" * 256]


def position_cases():
    cases = []
    for i, text in enumerate(BAD_POSITIONS):
        query = "?min_position=" + text.replace(",", "%2C")
        for target in (KV_ITEM, KV_NEW, "/api/kv/"):
            cases.append(
                Case(
                    f"min-position-{i}-{target}",
                    "GET",
                    target + query,
                    code="invalid_position",
                )
            )
        cases.append(
            Case(
                f"min-position-header-{i}",
                "GET",
                KV_ITEM,
                (("Kvstore-Min-Position", text),),
                code="invalid_position",
            )
        )
        cases.append(
            Case(
                f"last-event-id-{i}",
                "GET",
                "/api/kv/watch",
                (("Last-Event-ID", text or "kv:x"),),
                code="invalid_position",
            )
        )
    for i, wait in enumerate(["wait=soon", "wait=-1", "wait=1.5", "wait="]):
        cases.append(
            Case(
                f"prefer-{i}",
                "GET",
                KV_ITEM,
                (("Prefer", wait),),
                code="invalid_prefer",
            )
        )
    for i, prefix in enumerate(["a%00", "%1F", "x" * 256]):
        for target in ("/api/kv/", "/api/kv/watch"):
            cases.append(
                Case(
                    f"prefix-{i}-{target}",
                    "GET",
                    f"{target}?prefix={prefix}",
                    code="invalid_prefix",
                )
            )
    cases.append(
        Case(
            "watch-key-and-prefix",
            "GET",
            "/api/kv/watch?key=a&prefix=a",
            code="invalid_request",
        )
    )
    for i, token in enumerate(BAD_TOKENS):
        for method, target, body in [
            ("PUT", KV_NEW, b"2"),
            ("DELETE", KV_ITEM, b""),
            ("PATCH", USER, b'{"name": "B"}'),
            ("POST", USERS, b'{"name": "A", "email": "a@example.com"}'),
        ]:
            cases.append(
                Case(
                    f"idempotency-key-{i}-{method}",
                    method,
                    target,
                    (JSON, ("Idempotency-Key", token)),
                    body,
                    code="invalid_idempotency_key",
                )
            )
    return _cases("positions", *cases)


CASES = (
    key_cases()
    + body_cases()
    + header_cases()
    + query_cases()
    + method_cases()
    + framing_cases()
    + position_cases()
)


# --- the instance -------------------------------------------------------------------


class EndOffsets:
    """Every namespace topic's end offsets, read with one plain Kafka client."""

    def __init__(self, settings):
        self.consumer = KafkaConsumer(
            bootstrap_servers=list(settings.bootstrap_servers), group_id=None
        )
        self.partitions = [
            TopicPartition(settings.topic(ns), p)
            for ns in settings.namespaces
            for p in range(settings.partitions)
        ]

    def now(self):
        return self.consumer.end_offsets(self.partitions)


@pytest.fixture(scope="module")
def instance(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(
        kafka_bootstrap, topic_configs=(("max.message.bytes", str(MAX_MESSAGE_BYTES)),)
    )
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    node = Instance(settings, tmp_path_factory.mktemp("bad-input"), workers=2)
    try:  # stopped even when it fails to start
        node.start()
        assert node.api("PUT", KV_ITEM, json={"v": 1}).status_code == 201
        user = node.api("POST", USERS, json={"name": "A", "email": "a@example.com"})
        assert user.status_code == 201
        node.user = user.json()["id"]
        node.offsets = EndOffsets(node.settings)
        yield node
        node.offsets.consumer.close()
    finally:
        node.stop()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_with_a_json_code_and_changes_nothing(instance, case):
    before = instance.offsets.now()
    answer = rawhttp.send(instance.port, case.bytes(instance.user))
    assert answer.status < 500, answer
    assert (answer.status, answer.json().get("code")) == (
        case.status,
        case.code,
    ), answer
    assert answer.json()["detail"]
    assert instance.offsets.now() == before, "a refused request wrote a record"


def test_the_suite_counts_what_gunicorn_refuses():
    """State, rather than hide, how many cases never reach Django (the web server
    answers them itself, as JSON through kvstore/api/loop.py), and keep the suite
    large."""
    by_gunicorn = [case for case in CASES if case.gunicorn]
    assert len(CASES) >= 400 and len({case.name for case in CASES}) == len(CASES)
    assert len(by_gunicorn) == 40, [case.name for case in by_gunicorn]


def test_an_unknown_method_reaches_django_and_the_connection_goes_on(instance):
    """llhttp, the store's HTTP parser, knows a fixed list of methods; one it does not
    know but gunicorn would pass on still gets Django's 405 with its Allow header, as
    the first request on a connection or a later one, and the next request on the
    connection is parsed with its own method (kvstore/api/loop.py)."""
    get = b"GET /api/kv/bad-input-item HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    foo = b"FOO /api/kv/bad-input-item HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", instance.port), timeout=30) as sock:
        answers = [_exchange(sock, request) for request in (foo, get, foo, get)]
    for refused in answers[0::2]:
        assert (refused.status, refused.json()["code"]) == (405, "method_not_allowed")
        assert "GET" in refused.headers["allow"], refused.headers
    for served in answers[1::2]:
        assert (served.status, served.json()) == (200, {"v": 1})


def _exchange(sock, request):
    """Send one request on a kept-alive connection; its Answer (one with a
    Content-Length)."""
    sock.sendall(request)
    received = b""
    while b"\r\n\r\n" not in received:
        received += _more(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(rawhttp.parse(head + b"\r\n\r\n").headers["content-length"])
    while len(body) < length:
        body += _more(sock)
    return rawhttp.parse(head + b"\r\n\r\n" + body)


def _more(sock):
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def test_the_instance_still_serves_after_the_suite(instance):
    key = f"/api/kv/after-{uuid.uuid4().hex[:8]}"
    assert instance.api("PUT", key, json=[1]).status_code == 201
    assert instance.api("GET", KV_ITEM).json() == {"v": 1}
    assert instance.api("GET", "/readyz").status_code == 200


def test_the_depth_limit_itself_round_trips_in_json_and_html(instance):
    deepest = "[" * values.MAX_DEPTH + "]" * values.MAX_DEPTH
    key = f"/api/kv/deepest-{uuid.uuid4().hex[:8]}"
    put = instance.api(
        "PUT", key, data=deepest, headers={"Content-Type": "application/json"}
    )
    assert put.status_code == 201
    assert instance.api("GET", key).text == deepest
    html = instance.api("GET", key, headers={"Accept": "text/html"})
    assert html.status_code == 200 and "text/html" in html.headers["Content-Type"]
    listed = instance.api("GET", "/api/kv/?limit=1000").json()["results"]
    assert any(item["key"] == key.rsplit("/", 1)[1] for item in listed)
