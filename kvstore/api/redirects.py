"""The 307 to a key's owner: its Location is the owner's base URL + the request's path
exactly as the client percent-encoded it + its query with the hop count raised. Built
from Django's decoded path instead, a key holding `?`, `#`, `%` or non-ASCII characters
would arrive at the owner as another key.
"""

import functools
import re
from urllib.parse import quote, unquote_plus, unquote_to_bytes, urlsplit

from django.utils.encoding import escape_uri_path
from rest_framework.exceptions import ParseError

from kvstore.errors import InvalidKey

HOP_PARAM = "_hop"
_HOPS = re.compile(r"[0-9]{1,4}")  # ASCII digits: "²".isdigit() is true too
# RFC 3986's pchar (with '/'), and '%' to keep the client's escapes as they are.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def raw_target(request):
    """(path, query) of the request as the client sent them, percent-encoded."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw is None:  # a server that keeps no raw URI: re-encode what Django decoded
        return escape_uri_path(request.path), _encoded(
            request.META.get("QUERY_STRING", ""), _QUERY_SAFE
        )
    if raw.startswith("/"):
        path, _, query = raw.partition("#")[0].partition("?")
    else:  # absolute-form: http://host/path?query
        parts = urlsplit(raw)
        path, query = parts.path, parts.query
    return _encoded(path, _PATH_SAFE), _encoded(query, _QUERY_SAFE)


def _encoded(text, safe):
    """`text` with every character a URI may not hold percent-encoded, and the
    client's own escapes kept."""
    raw = text.encode("latin-1") if all(ch <= "\xff" for ch in text) else text.encode()
    return _STRAY_PERCENT.sub("%25", quote(raw, safe=safe))


def hop_count(request):
    """How many redirects the request has taken (its `_hop`); ParseError when that is
    not one whole number."""
    hops = request.GET.getlist(HOP_PARAM)
    if not hops:
        return 0
    if len(hops) > 1 or not _HOPS.fullmatch(hops[0]):
        raise ParseError(
            f"{HOP_PARAM} must be one whole number (the redirects taken so far)."
        )
    return int(hops[0])


def location(owner, request, hops):
    """The owner's URL for the same request, with `_hop` set to `hops`."""
    path, query = raw_target(request)
    kept = [
        part
        for part in query.split("&")
        if part and unquote_plus(part.partition("=")[0]) != HOP_PARAM
    ]
    return f"{owner}{path}?{'&'.join(kept + [f'{HOP_PARAM}={hops}'])}"


def check_path_is_utf8(request):
    """InvalidKey when the percent-decoded path is not UTF-8 (Django would keep such
    bytes as literal "%XX" text, so another key would be read or written)."""
    path, _ = raw_target(request)
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey("The key is not UTF-8 once percent-decoded.") from None


@functools.lru_cache(maxsize=16)
def namespace_pattern(namespaces, rest):
    """The compiled pattern of a path /api/{namespace}`rest` for one of `namespaces`
    (group `ns`)."""
    names = "|".join(map(re.escape, namespaces))
    return re.compile(rf"^/api/(?P<ns>{names}){rest}")
