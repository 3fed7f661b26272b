"""Idempotent writes: a client's `Idempotency-Key` travels in its record's headers, and
whoever applies the partition records the first answer it decided, so a retry through
any instance, after any rebalance, gets that answer back and writes nothing.

The log decides here as it does for conditions (kvstore.conditions): a second record
with the same key, within the window (by record time), takes no effect wherever it
landed, so two retries racing past the owner's check still write once. The key is
scoped to the entry and to the caller's API key; a POST's new id is derived from it,
so its retries land on the same entry.
"""

import dataclasses
import hashlib
import json
import re

from kvstore import cache

# Half of the compaction lag kvstore_init sets: a retry within it always finds the first
# record still in the log, so even an instance restoring from scratch knows it.
DEFAULT_WINDOW_S = 1800
SCOPE_HEADER = "kvstore-idem-key"
REQUEST_HEADER = "kvstore-idem-request"
OUTCOME_HEADER = "kvstore-idem-outcome"
# What a write did, as its first answer says it: the HTTP face maps it to a status.
CREATED, REPLACED, DELETED, REJECTED = "created", "replaced", "deleted", "rejected"
OUTCOMES = (CREATED, REPLACED, DELETED)
# Visible ASCII, like an HTTP token or a UUID; long enough for any client's scheme.
_TOKEN = re.compile(r"[\x21-\x7e]{1,255}")


class TokenInvalid(ValueError):
    """An Idempotency-Key header that is empty, too long or not visible ASCII."""


@dataclasses.dataclass(frozen=True)
class Idempotent:
    """An idempotent write as its record carries it: the scoped key, the request's
    fingerprint, and what it does if it takes effect (one of OUTCOMES)."""

    scope: str
    request: str
    outcome: str = ""

    def headers(self, outcome):
        return (
            (SCOPE_HEADER, self.scope.encode("ascii")),
            (REQUEST_HEADER, self.request.encode("ascii")),
            (OUTCOME_HEADER, outcome.encode("ascii")),
        )


def check_token(token):
    """The client's Idempotency-Key, if it is one; TokenInvalid otherwise."""
    if not _TOKEN.fullmatch(token):
        raise TokenInvalid(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)."
        )
    return token


def scoped(token, principal=""):
    """The key as records carry it: the caller's API key (its short id) and the client's
    token, hashed, so two callers' keys never meet and no token is written out."""
    return hashlib.sha256(f"{principal}\0{token}".encode()).hexdigest()[:32]


def fingerprint(method, body):
    """What makes two requests the same: the method and the JSON body, compared by
    value (key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method}\0{canonical}".encode()).hexdigest()[:32]


def derived_key(namespace, scope):
    """The id a POST with this scoped key creates: the same for every retry, so they
    all reach one entry (and one owner), where the log keeps one."""
    return hashlib.sha256(f"{namespace}\0{scope}".encode()).hexdigest()[:32]


def of(headers):
    """The Idempotent a record carries, or None (none, or headers that do not parse:
    a foreign producer's, taken as an ordinary write)."""
    found = {
        name: value for name, value in headers or () if name.startswith("kvstore-")
    }
    try:
        scope = found[SCOPE_HEADER].decode("ascii")
        request = found[REQUEST_HEADER].decode("ascii")
        outcome = found[OUTCOME_HEADER].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        return None
    return Idempotent(scope, request, outcome) if outcome in OUTCOMES else None


def outlasts(window_s, lag_ms):
    """Whether a window of `window_s` is longer than half a compaction lag of `lag_ms`
    (none: 0): past it, an instance restoring from scratch after compaction may not
    find a key's first record any more."""
    return bool(lag_ms) and window_s * 1000 > lag_ms // 2


def repeats(prior, record_ms, window_ms):
    """Whether a record at `record_ms` repeats the `prior` answer (a cache.Answered or
    None): one with the same key within the window."""
    return prior is not None and record_ms - prior.at < window_ms


class Ledger:
    """The first answers decided in one partition's batch, over the cache's table: the
    consumer's apply step asks it whether a record repeats one, and records answers."""

    def __init__(self, conn, namespace, partition, window_ms=None):
        self.conn, self.namespace, self.partition = conn, namespace, partition
        self.window_ms = DEFAULT_WINDOW_S * 1000 if window_ms is None else window_ms
        self.pending = {}  # (key, scope) -> cache.Answered

    def repeats(self, key, idem, record_ms):
        prior = self.pending.get((key, idem.scope))
        if prior is None:
            prior = cache.View(self.conn).idempotent(self.namespace, key, idem.scope)
        return repeats(prior, record_ms, self.window_ms)

    def answer(self, key, idem, record, value=None, rejected_at=None):
        """Record the first answer of `record`: its planned outcome with `value`, or
        REJECTED when the log rejected it (`rejected_at`: the version current there,
        "" for none)."""
        outcome, current = idem.outcome, None
        if rejected_at is not None:
            outcome, current, value = REJECTED, rejected_at or None, None
        self.pending[(key, idem.scope)] = cache.Answered(
            self.partition,
            record.offset,
            idem.request,
            outcome,
            value,
            current,
            float(record.timestamp),
        )

    def write(self):
        self.conn.executemany(
            "INSERT OR REPLACE INTO idempotency (namespace, key, scope, partition, "
            "offset, request, outcome, value, current, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.namespace, key, scope, *answer)
                for (key, scope), answer in self.pending.items()
            ],
        )
