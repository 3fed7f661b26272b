"""What the fast path (kvstore.api.fast) needs to write a plain PUT below Django: which
views it may write for (`writer`), the value a body makes (`value`), and the Attempt it
leaves in the environ for Django to answer when the outcome is not a plain 200 or 201
(the view finds it with `attempted`)."""

import dataclasses
import inspect
import io

from django.conf import settings as django_settings
from django.urls import resolve
from rest_framework.exceptions import APIException

from kvstore import routing
from kvstore.api.parsers import StoreJSONParser
from kvstore.errors import InvalidKey

# The environ key of a write the fast path made and left Django to answer: a client's
# headers all arrive as HTTP_*, so no request can carry one.
ATTEMPT = "kvstore.fast.attempt"
# The write hooks of kvstore.api.views.NamespaceViewSet that the fast path runs itself.
WRITE_HOOKS = ("to_value", "merge", "write_condition")


@dataclasses.dataclass
class Attempt:
    """A write the fast path made, for Django to answer: its WriteResult or the error
    it raised, with the request's time so far."""

    namespace: str
    key: str
    result: object
    error: BaseException
    phases: dict
    started: float

    def outcome(self):
        """The WriteResult; raises the write's error."""
        if self.error is not None:
            raise self.error
        return self.result


def attempted(request, namespace, key):
    """The fast path's Attempt at this PUT, or None when it made none."""
    attempt = request.META.get(ATTEMPT)
    if attempt is None or request.method != "PUT":
        return None
    if (attempt.namespace, attempt.key) != (namespace, key):
        raise RuntimeError("a fast-path write reached another view")  # never
    return attempt


REFUSED = object()
_PARSER = StoreJSONParser()


class _Body:
    """What a view's `to_value` hook reads of a plain PUT: its body, and the JSON value
    the store's parser (kvstore.api.parsers) makes of it."""

    def __init__(self, body, data):
        self.body, self.data = body, data


def value(environ, view):
    """The value `view` would write for a plain PUT (its `to_value` of the body, as the
    store's parser reads it), or REFUSED for a body either would refuse, or that is
    not plain; Django reads the body again, from the copy left in the environ, to
    answer."""
    if environ.get("CONTENT_TYPE") != "application/json":
        return REFUSED
    length = environ.get("CONTENT_LENGTH") or ""
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if not length.isdigit() or (limit is not None and int(length) > limit):
        return REFUSED
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) != int(length):
        return REFUSED
    try:
        data = _PARSER.parse(io.BytesIO(body), "application/json", {})
        return view.to_value(_Body(body, data), partial=False)
    except APIException:  # not JSON, not text, a value refused, or invalid
        return REFUSED


_writers = {}


def writer(namespace, path):
    """The namespace's view class when the fast path may write its plain PUTs, else
    None."""
    if namespace not in _writers:
        viewset = viewset_of(path)
        _writers[namespace] = viewset if writes_below_django(viewset) else None
    return _writers[namespace]


def viewset_of(path):
    """The view class that serves `path`."""
    return resolve(path).func.cls


def writes_below_django(viewset):
    """Whether the fast path may write a view's plain PUTs through its hooks: it must
    keep NamespaceViewSet's `update`, and either its write hooks too or say that they
    read nothing of a request but its body and data (`fast_writes`)."""
    from kvstore.api.views import NamespaceViewSet

    def stock(hook):
        # unwrap: drf-spectacular's schema decorators wrap inherited methods.
        ours = inspect.unwrap(getattr(NamespaceViewSet, hook))
        return inspect.unwrap(getattr(viewset, hook)) is ours

    hooks = viewset.fast_writes or all(map(stock, WRITE_HOOKS))
    return stock("update") and hooks


def valid_key(key):
    try:
        routing.validate_key(key)
    except InvalidKey:
        return False
    return True
