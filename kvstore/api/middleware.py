"""Routing at the door: a key-addressed request for a partition another instance owns is
answered with its 307 before Django REST framework runs, so the redirect costs the
non-owner as little as possible. With KVSTORE_AUTH=required the caller's key and role
are checked first, so an anonymous client learns nothing, not even the owner. Everything
else (every error included) goes on to the views, which route again inside their own
read of the cache. Requests the store cannot honour as sent are refused here, before
anything reads them (`refuse`)."""

from rest_framework.exceptions import APIException, UnsupportedMediaType

from kvstore import routing, timing
from kvstore.api import auth, fastwrite, params, redirects
from kvstore.api.handlers import json_response, redirect_or_loop, refusal
from kvstore.conf import store_settings
from kvstore.errors import InvalidRequest, LengthRequired, NotOwner, StoreError
from kvstore.repository import get_repository

WATCH = "watch"
# After /api/{namespace}: one key; /api/{ns}/watch is the watch stream, not the key
# "watch" (reserved).
ITEM = rf"/(?!{WATCH}/?$)(?P<key>[^/]+)/?$"


class RedirectToOwnerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        auth.warn_if_open(store_settings())

    @staticmethod
    def _item(path):
        namespaces = store_settings().namespaces
        return redirects.namespace_pattern(namespaces, ITEM).match(path)

    def __call__(self, request):
        if fastwrite.ATTEMPT in request.META:
            # Written here already, below Django: the view answers with the outcome.
            return self.get_response(request)
        match = self._item(request.path_info)
        refused = refuse(request, item=match and match["ns"])
        if refused is not None:
            return json_response(refused)
        if match is not None:
            try:
                owner = self._owner(request, match["ns"], match["key"])
            except InvalidRequest as bad:
                return json_response(bad)
            if owner is not None:
                refused = refusal(request, auth.needed(request))
                if refused is not None:
                    return refused
                redirect = NotOwner(owner.owner, owner.partition)
                return json_response(*redirect_or_loop(redirect, request))
        return self.get_response(request)

    @staticmethod
    def _owner(request, namespace, key):
        """The key's Placement when a peer serves it, else None (the view answers).
        InvalidRequest for a min_position naming a partition the namespace lacks."""
        settings = store_settings()
        try:
            with timing.phase(timing.ROUTE), get_repository().reader.snapshot() as view:
                placement = routing.locate_key(view, settings, namespace, key)
                if placement.owner is not None and params.asks_position(request):
                    count = routing.topic_facts(view, namespace, settings).partitions
                    params.check_min_position(request, namespace, count)
        except InvalidRequest:
            raise
        except StoreError:
            return None
        return placement if placement.owner is not None else None


def refuse(request, item):
    """The error for a request that cannot be honoured as sent, or None. `item`: the
    namespace, when the path names one key."""
    # A disallowed Host raises DisallowedHost here (a JSON 400), as on every other path.
    request.get_host()
    if "HTTP_TRANSFER_ENCODING" in request.META:
        # Django reads a body only as far as Content-Length: a chunked one would be
        # taken as empty and the request half done.
        return LengthRequired()
    if request.META.get("HTTP_CONTENT_ENCODING", "").strip() not in ("", "identity"):
        # A compressed body would be parsed (or stored) as if it were plain JSON.
        return UnsupportedMediaType(
            request.content_type,
            "Request bodies must not be compressed (Content-Encoding).",
        )
    if item:
        try:
            redirects.check_path_is_utf8(request)
            redirects.hop_count(request)
            params.check_min_position(request, item)
            params.prefer_wait(request, store_settings())
        except APIException as error:
            return error
    return None
