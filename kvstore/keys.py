"""API keys at rest: how a key is made, how it is written down (`role:sha256-hex`, the
only form the store keeps), and how a presented key is matched in constant time."""

import hashlib
import hmac
import re
import secrets

READ, WRITE, ADMIN = "read", "write", "admin"
ROLES = (READ, WRITE, ADMIN)
# Peers present the cluster secret and get this role; no key can be given it.
PEER = "peer"
# What a request may need, besides read/write/admin: the peer-to-peer endpoints.
INTERNAL = "internal"
# What each role may do: a write key reads too; an admin key does everything,
# including the cluster view and the internals; a peer only the internals.
GRANTS = {
    READ: {READ},
    WRITE: {READ, WRITE},
    ADMIN: {READ, WRITE, ADMIN, INTERNAL},
    PEER: {INTERNAL},
}
PREFIX = "kvs_"  # lets secret scanners and people recognise a leaked key
_HEX = re.compile(r"^[0-9a-f]{64}$")


def new_key():
    """A fresh random key (256 bits of entropy)."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key):
    """The SHA-256 hex digest of a key: keys are random, so no salt or stretching is
    needed, and a leaked key file reveals no key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def line(role, key):
    """The line that configures `key` with `role`."""
    return f"{role}:{digest(key)}"


def parse_line(text):
    """(sha256-hex, role) from a `role:sha256-hex` line; ValueError saying what is
    wrong."""
    role, sep, hashed = text.strip().partition(":")
    if not sep or role not in ROLES:
        raise ValueError(
            f"{text.strip()!r} is not role:sha256-hex with a role of "
            f"{', '.join(ROLES)}"
        )
    hashed = hashed.strip().lower()
    if not _HEX.match(hashed):
        raise ValueError(f"{text.strip()!r}: the hash must be 64 hex digits (SHA-256)")
    return hashed, role


def match(presented, known):
    """The role of `presented` among `known` ((sha256-hex, role) pairs), or None.
    Every entry is compared, in constant time, so timing tells nothing about how
    close a guess came."""
    presented_hash = digest(presented)
    found = None
    for hashed, role in known:
        if hmac.compare_digest(presented_hash, hashed):
            found = role
    return found
