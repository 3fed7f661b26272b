"""The HTTP API of a namespace (a thin DRF ViewSet over the repository) and the API
root; the cluster and peer endpoints and the health probes are kvstore.api.instance."""

import re
from urllib.parse import urlencode

from django.urls import NoReverseMatch
from django.urls import reverse as url_path
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from kvstore import positions, routing
from kvstore.api import fastwrite, params, schema, shapes
from kvstore.conf import store_settings
from kvstore.errors import InvalidRequest
from kvstore.repository import ANY, Condition, get_repository

MAX_PAGE = 1000
DEFAULT_PAGE = 100


# ASCII digits only: str.isdigit() is true for "²" and "①" too, which int() refuses.
NUMBER = re.compile(r"[0-9]{1,9}")
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
    if not NUMBER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
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
    return store_settings().advertised_url + url_path(name, kwargs=kwargs or None)


class NamespaceViewSet(viewsets.ViewSet):
    """Key-addressed CRUD over one namespace. Subclasses set `namespace` and may
    override the hooks `to_value` (request data → stored JSON), `merge`,
    `write_condition` and `represent` (entry → response body)."""

    namespace = None
    lookup_field = "key"
    lookup_value_regex = "[^/]+"
    # Whether the fast path (kvstore.api.fast) may write plain PUTs through this view's
    # own write hooks: set it when they read nothing of the request but `body` and
    # `data`. Views that keep this class's hooks are written there anyway.
    fast_writes = False

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
        prefix = params.prefix(request)
        wait = params.read_wait(request, self.namespace)
        page = self.repository.list(self.namespace, after, limit, prefix, wait)
        next_url = None
        if page.after is not None:
            query = {"after": page.after, "limit": limit}
            query.update({"prefix": prefix} if prefix else {})
            next_url = f"{link(f'{self.basename}-list')}?{urlencode(query)}"
        results = [self.represent_listed(entry) for entry in page.entries]
        body = {"results": results, "next": next_url, "position": str(page.position)}
        return Response(body, headers={positions.HEADER: str(page.position)})

    def retrieve(self, request, key):
        consistency = request.query_params.get("consistency", "cache")
        if consistency not in ("cache", "strong"):
            raise ParseError("consistency must be 'cache' (the default) or 'strong'.")
        wait = params.read_wait(request, self.namespace)
        unchanged = [
            tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")
        ]
        strong = consistency == "strong"
        read = self.repository.get(self.namespace, key, strong, wait)
        if read.entry.version.etag in unchanged and wait.seconds:
            # A long-poll: answer once the entry changes, or 304 when time is up.
            read = self.long_poll(key, unchanged, wait.seconds)
        etag = read.entry.version.etag
        headers = {"ETag": etag, positions.HEADER: str(read.position)}
        if etag in unchanged:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(self.represent(read.entry), headers=headers)

    def long_poll(self, key, unchanged, seconds):
        with params.waiting_slot(self.repository):
            return self.repository.changed(self.namespace, key, unchanged, seconds)

    def update(self, request, key, partial=False):
        attempt = fastwrite.attempted(request, self.namespace, key)
        if attempt is not None:  # written below Django: answer with its outcome
            result = attempt.outcome()
        else:
            routing.validate_key(key)
            condition = self.write_condition(parse_condition(request), partial)
            value = self.to_value(request, partial)
            result = self.repository.put(
                self.namespace,
                key,
                lambda current: self.merge(current, value, partial),
                condition,
                params.idempotent(request, request.data),
            )
        done = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return self.written(result, done)

    def partial_update(self, request, key):
        return self.update(request, key, partial=True)

    def destroy(self, request, key):
        idem = params.idempotent(request, None)
        condition = parse_condition(request)
        result = self.repository.delete(self.namespace, key, condition, idem)
        return self.written(result, status.HTTP_204_NO_CONTENT)

    def written(self, result, done_status, headers=None):
        """The answer to a write: `done_status` once applied here, else 202 with the
        version; with the record's position, and whether it is a replay."""
        version = result.version
        position = positions.single(self.namespace, version.partition, version.offset)
        headers = {
            "ETag": version.etag,
            positions.HEADER: str(position),
            **(headers or {}),
        }
        if result.replayed:
            headers[params.REPLAYED] = "true"
        if not result.applied:
            return Response(
                _not_confirmed(result), status=status.HTTP_202_ACCEPTED, headers=headers
            )
        body = None if result.entry is None else self.represent(result.entry)
        return Response(body, status=done_status, headers=headers)


def _not_confirmed(result):
    """The body of a 202: durable in Kafka, not (yet) confirmed here."""
    version = result.version.etag.strip('"')
    if result.conditional:
        return {
            "code": "accepted_undecided",
            "version": version,
            "detail": "Written to Kafka; whether its condition held where it landed is "
            "decided when the partition's owner applies it, which this instance could "
            "not confirm in time. Read the key to see whether it took effect.",
        }
    return {
        "code": "accepted_not_applied",
        "version": version,
        "detail": "Written to Kafka, but this instance has not applied it yet; "
        "later reads may not show it yet.",
    }


@schema.namespace_schema(
    name="Entry",
    value=schema.ANY_JSON,
    written_value=schema.ANY_JSON,
    listed=shapes.ListedEntrySerializer,
    key_description="Any key.",
)
class KeyValueViewSet(NamespaceViewSet):
    """Free-form JSON values by key: GET, PUT and DELETE /api/kv/{key}; GET /api/kv/
    lists."""

    namespace = "kv"
    http_method_names = ["get", "put", "delete", "head", "options"]


class ApiRootView(APIView):
    """GET /api/: the namespaces, the cluster view, the schema and its docs."""

    @extend_schema(responses={status.HTTP_200_OK: shapes.LINKS})
    def get(self, request):
        url_names = {ns: f"{ns}-list" for ns in store_settings().namespaces}
        url_names.update(cluster="cluster", schema="schema", docs="docs")
        links = {}
        for name, url_name in url_names.items():
            try:
                links[name] = link(url_name)
            except NoReverseMatch:  # a namespace the project does not mount
                continue
        return Response(links)
