r"""Peer URLs, parsed strictly: the one rule for what a base URL is and whether it is a
loopback address. A URL that browsers and Python's urlsplit could read as different
hosts (`http://evil.example\@127.0.0.1:8000`) is no base URL at all.
"""

import ipaddress
import re

_BASE_URL = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*)"
)


def base_url(value):
    """`value` as a canonical base URL (no trailing slash), or None when it is not
    scheme://host[:port][/path] with nothing else (no user info, query or fragment)."""
    match = _BASE_URL.fullmatch(value or "")
    if match is None or int(match["port"] or 0) > 65535:
        return None
    return value.rstrip("/")


def host(url):
    """The host of a base URL (IPv6 without brackets), or None."""
    match = _BASE_URL.fullmatch(url or "")
    return match["host"].strip("[]") if match else None


def is_loopback(url):
    """Whether a base URL names this machine: localhost or a loopback address."""
    name = host(url)
    if name is None:
        return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
