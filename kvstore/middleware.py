"""Routing at the door: a key-addressed request for a partition another instance owns is answered with
its 307 before Django REST framework runs, so the redirect costs the non-owner as little as possible.
Everything else (including every error) goes on to the views, which route again inside their own
read of the cache."""
import re

from kvstore import routing
from kvstore.conf import store_settings
from kvstore.errors import NotOwner, StoreError, json_response, redirect_or_loop
from kvstore.repository import get_repository


class RedirectToOwnerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._patterns = {}

    def _item(self, path):
        settings = store_settings()
        pattern = self._patterns.get(settings.namespaces)
        if pattern is None:
            names = "|".join(map(re.escape, settings.namespaces))
            pattern = self._patterns[settings.namespaces] = re.compile(rf"^/api/(?P<ns>{names})/(?P<key>[^/]+)/?$")
        return pattern.match(path)

    def __call__(self, request):
        match = self._item(request.path_info)
        if match is not None:
            try:
                with get_repository().reader.snapshot() as view:
                    routing.route(view, store_settings(), match["ns"], match["key"])
            except NotOwner as exc:
                return json_response(*redirect_or_loop(exc, request.path, request.GET))
            except StoreError:
                pass  # the view answers it in full
        return self.get_response(request)
