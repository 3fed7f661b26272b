"""What the newer request headers and parameters say: positions to wait for
(`min_position`, `Kvstore-Min-Position`), how long to wait (`Prefer: wait=N`), a key
prefix, and an `Idempotency-Key`. Each refuses what it cannot read with a 400 naming
it: taken as absent, it would quietly weaken the request."""

import contextlib
import re
import unicodedata

from kvstore import idempotency, positions
from kvstore.conf import store_settings
from kvstore.entries import Wait
from kvstore.errors import InvalidRequest, NotServing

MIN_POSITION = "min_position"
PREFER = "Prefer"
IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # on the first answer to a retried request
MAX_PREFIX_BYTES = 255
_WAIT = re.compile(r"[0-9]{1,9}")


def asks_position(request):
    return MIN_POSITION in request.GET or positions.MIN_HEADER in request.headers


def min_position(request, namespace, partitions=None):
    """The positions a read must reflect (query `min_position` and header
    `Kvstore-Min-Position`, the later of each partition's), or None."""
    found = None
    texts = request.GET.getlist(MIN_POSITION)
    header = request.headers.get(positions.MIN_HEADER)
    for text in texts + ([header] if header is not None else []):
        try:
            vector = positions.parse(text, namespace, partitions)
        except positions.PositionInvalid as exc:
            raise InvalidRequest(
                f"{MIN_POSITION}: {exc}", code="invalid_position"
            ) from None
        found = vector.merged(found)
    return found


def check_min_position(request, namespace, partitions=None):
    """For the redirecting middleware: InvalidRequest unless a min_position given is
    well formed (the owner would refuse it after the 307 otherwise)."""
    min_position(request, namespace, partitions)


def prefer_wait(request, settings):
    """Seconds `Prefer: wait=N` asks to wait, at most KVSTORE_MAX_WAIT (RFC 7240: a
    server may wait less), or None when it asks nothing."""
    header = request.headers.get(PREFER)
    if header is None:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue  # other preferences are not ours to refuse
        value = value.strip().strip('"')
        if not _WAIT.fullmatch(value):
            raise InvalidRequest(
                "Prefer: wait must be a whole number of seconds.",
                code="invalid_prefer",
            )
        return min(float(value), settings.max_wait)
    return None


def prefix(request):
    """The key prefix a list or watch is limited to ("" for none)."""
    text = request.query_params.get("prefix", "")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES or any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in text
    ):
        raise InvalidRequest(
            f"prefix must be at most {MAX_PREFIX_BYTES} bytes of UTF-8 without "
            "control characters.",
            code="invalid_prefix",
        )
    return text


def idempotent(request, body):
    """The Idempotent of a write carrying `Idempotency-Key` (scoped to the caller's
    API key), or None."""
    token = request.headers.get(IDEMPOTENCY_KEY)
    if token is None:
        return None
    try:
        idempotency.check_token(token)
    except idempotency.TokenInvalid as exc:
        raise InvalidRequest(str(exc), code="invalid_idempotency_key") from None
    # An auth.Principal with KVSTORE_AUTH=required; nobody (None) otherwise.
    principal = getattr(request.user, "key_id", "")
    return idempotency.Idempotent(
        idempotency.scoped(token, principal),
        idempotency.fingerprint(request.method, body),
    )


def read_wait(request, namespace):
    """What a read waits for first: its min_position, for at most Prefer: wait (or
    KVSTORE_APPLY_TIMEOUT)."""
    return Wait(
        min_position(request, namespace), prefer_wait(request, store_settings())
    )


def peer_wait(request, namespace):
    """The same for a gathering peer, which passes its client's wait on as `wait`."""
    seconds = request.query_params.get("wait")
    if seconds is not None and not _WAIT.fullmatch(seconds):
        raise InvalidRequest("wait must be a whole number of seconds.")
    seconds = (
        None if seconds is None else min(float(seconds), store_settings().max_wait)
    )
    return Wait(min_position(request, namespace), seconds)


def take_slot(repository):
    """One of the instance's KVSTORE_MAX_WATCHES slots for a request that waits long
    (give it back with `repository.slots.release`); 503 too_many_watches when none is
    free."""
    slot = repository.slots.take()
    if slot is None:
        settings = store_settings()
        raise NotServing(
            f"This instance already holds {settings.max_watches} watches and "
            "long-polls (KVSTORE_MAX_WATCHES); try again, or another instance.",
            code="too_many_watches",
            wait=2,
        )
    return slot


@contextlib.contextmanager
def waiting_slot(repository):
    """A slot (see `take_slot`) for the duration of a `with` block."""
    slot = take_slot(repository)
    try:
        yield slot
    finally:
        repository.slots.release(slot)
