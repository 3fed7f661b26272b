"""Who may ask: the API key (Bearer, or HTTP Basic with the key as the password, for
browsers) or the peers' cluster secret, its role, and what the request needs. With
KVSTORE_AUTH=off everyone may do everything, as before keys existed."""

import base64
import binascii
import dataclasses
import logging

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    PermissionDenied,
)
from rest_framework.permissions import SAFE_METHODS, BasePermission

from kvstore import keys
from kvstore.conf import store_settings

logger = logging.getLogger(__name__)
REALM = "kvstore"


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: its role and a short, harmless id of its key for
    logs."""

    role: str
    key_id: str
    is_authenticated = True

    def may(self, need):
        return need in keys.GRANTS[self.role]


def presented_key(request):
    """The key in the Authorization header (Bearer, or Basic's password), or None when
    there is no such header; AuthenticationFailed when it cannot be read."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not scheme:
        return None
    if scheme == "bearer" and value:
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        _, sep, password = decoded.partition(":")
        if sep and password:
            return password
    raise AuthenticationFailed(
        "Send Authorization: Bearer <key>, or Basic with the key as the password."
    )


def identify(request, settings):
    """The request's Principal, None when it presents no key, AuthenticationFailed
    when the key is unknown."""
    key = presented_key(request)
    if key is None:
        return None
    known = settings.api_keys
    if settings.cluster_secret:
        known += ((keys.digest(settings.cluster_secret), keys.PEER),)
    role = keys.match(key, known)
    if role is None:
        raise AuthenticationFailed("Unknown API key.")
    return Principal(role, keys.digest(key)[:8])


def needed(request, view=None):
    """What a request needs: the view's `required_role` if it sets one, else read for
    GET, HEAD and OPTIONS and write for everything else."""
    role = getattr(view, "required_role", None)
    if role is not None:
        return role
    return keys.READ if request.method in SAFE_METHODS else keys.WRITE


def enforce(request, need):
    """For code before DRF (the redirecting middleware): raise what DRF would, unless
    the request may do `need`."""
    settings = store_settings()
    if not settings.auth_required:
        return
    principal = identify(request, settings)
    if principal is None:
        raise NotAuthenticated()
    if not principal.may(need):
        raise PermissionDenied(f"A {principal.role} key may not do this.")


def challenge(request):
    """The WWW-Authenticate of a 401: Basic for browsers (so they ask for the key),
    Bearer for API clients."""
    if "text/html" in request.META.get("HTTP_ACCEPT", ""):
        return f'Basic realm="{REALM}", charset="UTF-8"'
    return f'Bearer realm="{REALM}"'


def warn_if_open(settings):
    if not settings.auth_required:
        logger.warning(
            "KVSTORE_AUTH=off: anyone who can reach this port can read and write "
            "every key. Set KVSTORE_AUTH=required in production."
        )


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication by API key; does nothing while KVSTORE_AUTH=off."""

    def authenticate(self, request):
        settings = store_settings()
        if not settings.auth_required:
            return None
        principal = identify(request, settings)
        return None if principal is None else (principal, principal.key_id)

    def authenticate_header(self, request):
        return challenge(request)


class RolePermission(BasePermission):
    """The caller's role must grant what the request needs (see `needed`)."""

    def has_permission(self, request, view):
        if not store_settings().auth_required:
            return True
        principal = request.user
        if principal is None:
            return False  # DRF answers 401 with the challenge
        if principal.may(needed(request, view)):
            return True
        self.message = f"A {principal.role} key may not do this."
        return False
