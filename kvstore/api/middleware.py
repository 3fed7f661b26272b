"""Routing at the door: a key-addressed request for a partition another instance owns is
answered with its 307 before Django REST framework runs, so the redirect costs the
non-owner as little as possible. Everything else (every error included) goes on to the
views, which route again inside their own read of the cache."""

import re

from kvstore import routing
from kvstore.api.handlers import json_response, redirect_or_loop
from kvstore.conf import store_settings
from kvstore.errors import NotOwner, StoreError
from kvstore.repository import get_repository


class RedirectToOwnerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._patterns = {}

    def _item(self, path):
        namespaces = store_settings().namespaces
        pattern = self._patterns.get(namespaces)
        if pattern is None:
            names = "|".join(map(re.escape, namespaces))
            pattern = re.compile(rf"^/api/(?P<ns>{names})/(?P<key>[^/]+)/?$")
            self._patterns[namespaces] = pattern
        return pattern.match(path)

    def __call__(self, request):
        match = self._item(request.path_info)
        if match is not None:
            owner = self._owner(match["ns"], match["key"])
            if owner is not None:
                redirect = NotOwner(owner.owner, owner.partition)
                return json_response(
                    *redirect_or_loop(redirect, request.path, request.GET)
                )
        return self.get_response(request)

    @staticmethod
    def _owner(namespace, key):
        """The key's Placement when a peer serves it, else None (the view answers)."""
        try:
            with get_repository().reader.snapshot() as view:
                placement = routing.locate_key(view, store_settings(), namespace, key)
        except StoreError:
            return None
        return placement if placement.owner is not None else None
