"""Routing at the door: a key-addressed request for a partition another instance owns is
answered with its 307 before Django REST framework runs, so the redirect costs the
non-owner as little as possible. With KVSTORE_AUTH=required the caller's key and role
are checked first, so an anonymous client learns nothing, not even the owner. Everything
else (every error included) goes on to the views, which route again inside their own
read of the cache."""

import re

from rest_framework import status
from rest_framework.exceptions import APIException

from kvstore import routing
from kvstore.api import auth
from kvstore.api.handlers import json_response, redirect_or_loop
from kvstore.conf import store_settings
from kvstore.errors import NotOwner, StoreError
from kvstore.repository import get_repository


class RedirectToOwnerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._patterns = {}
        auth.warn_if_open(store_settings())

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
                refused = self._refusal(request)
                if refused is not None:
                    return refused
                redirect = NotOwner(owner.owner, owner.partition)
                return json_response(
                    *redirect_or_loop(redirect, request.path, request.GET)
                )
        return self.get_response(request)

    @staticmethod
    def _refusal(request):
        """The 401 or 403 JSON answer when the caller may not do what it asks."""
        try:
            auth.enforce(request, auth.needed(request))
        except APIException as exc:
            if exc.status_code == status.HTTP_401_UNAUTHORIZED:
                exc.auth_header = auth.challenge(request)
            return json_response(exc)
        return None

    @staticmethod
    def _owner(namespace, key):
        """The key's Placement when a peer serves it, else None (the view answers)."""
        try:
            with get_repository().reader.snapshot() as view:
                placement = routing.locate_key(view, store_settings(), namespace, key)
        except StoreError:
            return None
        return placement if placement.owner is not None else None
