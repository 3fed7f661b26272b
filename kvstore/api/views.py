"""The HTTP API of a namespace (a thin DRF ViewSet over the repository), the cluster and
peer endpoints, and health endpoints."""

import functools
import re
from urllib.parse import urlencode

from django.http import JsonResponse
from django.urls import reverse
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from kvstore import cache, cluster, routing
from kvstore.api.handlers import method_not_allowed
from kvstore.conf import store_settings
from kvstore.errors import InvalidRequest
from kvstore.repository import ANY, Condition, get_repository

MAX_PAGE = 1000
DEFAULT_PAGE = 100
# ASCII digits only: str.isdigit() is true for "²" and "①" too, which int() refuses.
_NUMBER = re.compile(r"[0-9]{1,9}")
_ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')


def parse_condition(request):
    """The write's precondition from If-Match / If-None-Match. A header that is sent
    but says nothing usable is refused: taken as absent, it would make the write
    unconditional."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() != ANY:
        raise InvalidRequest(
            "Writes accept only If-None-Match: *", code="invalid_precondition"
        )
    if_match = request.headers.get("If-Match")
    tags = () if if_match is None else _entity_tags(if_match)
    return Condition(if_match=tags, absent=if_none_match is not None)


def _entity_tags(header):
    """The entity tags of an If-Match header: "*" or a list of quoted tags."""
    tags = tuple(tag.strip() for tag in header.split(",") if tag.strip())
    if tags == (ANY,) or (tags and all(map(_ENTITY_TAG.fullmatch, tags))):
        return tags
    raise InvalidRequest(
        'If-Match must be * or a list of quoted versions like "0-41".',
        code="invalid_precondition",
    )


def parse_number(request, name, default, minimum, maximum):
    """A whole-number query parameter from `minimum` to `maximum`; ParseError
    otherwise."""
    raw = request.query_params.get(name, str(default))
    if not _NUMBER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ParseError(f"{name} must be a whole number from {minimum} to {maximum}.")
    return int(raw)


def parse_limit(request, maximum=MAX_PAGE):
    return parse_number(request, "limit", DEFAULT_PAGE, 1, maximum)


def require_body(request):
    """ParseError for a write without a body: no JSON value is no change to make."""
    if not request.body:
        raise ParseError("The request body must be a JSON value.")


def link(name, **kwargs):
    """The absolute URL of a named route on this instance, from its advertised URL,
    never from the request's Host header."""
    return store_settings().advertised_url + reverse(name, kwargs=kwargs or None)


class NamespaceViewSet(viewsets.ViewSet):
    """Key-addressed CRUD over one namespace. Subclasses set `namespace` and may
    override the hooks `to_value` (request data → stored JSON), `merge`,
    `write_condition` and `represent` (entry → response body)."""

    namespace = None
    lookup_field = "key"
    lookup_value_regex = "[^/]+"

    @property
    def repository(self):
        return get_repository()

    # Hooks

    def to_value(self, request, partial=False):
        """The validated value (or, when `partial`, the fields to change)."""
        require_body(request)
        return request.data

    def merge(self, current, value, partial):
        """The value to store, given the current Entry (or None); runs under the key's
        lock."""
        return value

    def write_condition(self, condition, partial):
        return condition

    def represent(self, entry):
        return entry.value

    def represent_listed(self, entry):
        version = entry.version.etag.strip('"')
        return {"key": entry.key, "value": entry.value, "version": version}

    # Actions

    def list(self, request):
        limit = parse_limit(request)
        after = request.query_params.get("after")
        page = self.repository.list(self.namespace, after, limit)
        next_url = None
        if page.after is not None:
            base = link(f"{self.basename}-list")
            next_url = f"{base}?{urlencode({'after': page.after, 'limit': limit})}"
        results = [self.represent_listed(entry) for entry in page.entries]
        return Response({"results": results, "next": next_url})

    def retrieve(self, request, key):
        consistency = request.query_params.get("consistency", "cache")
        if consistency not in ("cache", "strong"):
            raise ParseError("consistency must be 'cache' (the default) or 'strong'.")
        entry = self.repository.get(self.namespace, key, strong=consistency == "strong")
        etag = entry.version.etag
        unchanged = request.headers.get("If-None-Match", "").split(",")
        if etag in [tag.strip() for tag in unchanged]:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(self.represent(entry), headers={"ETag": etag})

    def update(self, request, key, partial=False):
        routing.validate_key(key)
        condition = self.write_condition(parse_condition(request), partial)
        value = self.to_value(request, partial)
        result = self.repository.put(
            self.namespace,
            key,
            lambda current: self.merge(current, value, partial),
            condition,
        )
        done = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return self.written(result, done)

    def partial_update(self, request, key):
        return self.update(request, key, partial=True)

    def destroy(self, request, key):
        result = self.repository.delete(self.namespace, key, parse_condition(request))
        return self.written(result, status.HTTP_204_NO_CONTENT)

    def written(self, result, done_status, headers=None):
        """The answer to a write: `done_status` once applied here, else 202 with the
        version."""
        headers = {"ETag": result.version.etag, **(headers or {})}
        if not result.applied:
            body = {
                "code": "accepted_not_applied",
                "version": result.version.etag.strip('"'),
                "detail": "Written to Kafka, but this instance has not applied it yet; "
                "later reads may not show it yet.",
            }
            return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)
        body = None if result.entry is None else self.represent(result.entry)
        return Response(body, status=done_status, headers=headers)


class KeyValueViewSet(NamespaceViewSet):
    """Free-form JSON values by key: GET, PUT and DELETE /api/kv/{key}; GET /api/kv/
    lists."""

    namespace = "kv"
    http_method_names = ["get", "put", "delete", "head", "options"]


class PartitionEntriesView(APIView):
    """GET /api/internal/entries/{namespace}?partitions=0,3&after=&limit= : rows of
    partitions this instance serves itself, for a peer gathering a list. Never
    redirects."""

    def get(self, request, namespace):
        if namespace not in store_settings().namespaces:
            raise NotFound("No such namespace.")
        raw = request.query_params.get("partitions", "")
        if not all(_NUMBER.fullmatch(part) for part in raw.split(",")):
            raise ParseError(
                "partitions must be a comma-separated list of partition numbers."
            )
        partitions = [int(part) for part in raw.split(",")]
        with get_repository().reader.snapshot() as view:
            facts = view.topic(namespace) if view is not None else None
        if facts is not None and max(partitions) >= facts.partitions:
            raise ParseError(
                f"{namespace!r} has partitions 0 to {facts.partitions - 1}."
            )
        limit = parse_limit(request, maximum=MAX_PAGE + 1)
        after = request.query_params.get("after")
        rows = get_repository().local_rows(namespace, partitions, after, limit)
        return Response({"entries": [list(row) for row in rows]})


class ClusterView(APIView):
    """GET /api/cluster: members, generation, partition → owner, and this instance's
    partitions."""

    def get(self, request):
        settings = store_settings()
        admin = cluster.shared_admin(settings)
        return Response(cluster.describe(get_repository().reader, settings, admin))


def safe_methods_only(view):
    """A plain Django view answering GET and HEAD; any other method is a JSON 405."""

    @functools.wraps(view)
    def checked(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(request, ("GET", "HEAD"))
        return view(request, *args, **kwargs)

    return checked


@safe_methods_only
def healthz(request):
    """The process is alive."""
    return JsonResponse({"status": "ok"})


@safe_methods_only
def readyz(request):
    """200 only when this instance can answer for every key: its consumer is alive and
    has joined the group, every partition it holds is restored, and every other
    partition has a known owner this instance may redirect to."""
    described = cluster.describe(get_repository().reader, store_settings())
    restoring = [
        f"{p['namespace']}/{p['partition']}"
        for p in described["local"]
        if p["state"] == cache.RESTORING
    ]
    unowned = [int(p) for p, owner in described["owners"].items() if owner is None]
    refused = described["refused_owners"]
    alive = described["consumer"]["alive"]
    joined = described["generation"] is not None
    ready = alive and joined and not restoring and not unowned and not refused
    body = {
        "ready": ready,
        "consumer_alive": alive,
        "consumer_error": described["consumer"]["last_error"],
        "generation": described["generation"],
        "partitions": len(described["local"]),
        "restoring": restoring,
        "unowned": unowned,
        # Partitions whose owner advertises a URL this instance may not redirect to
        # (KVSTORE_PEER_ALLOWLIST): every request for them is a 503 here.
        "refused_owners": refused,
    }
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JsonResponse(body, status=code)
