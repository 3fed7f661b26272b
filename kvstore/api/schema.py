"""The OpenAPI description of the HTTP face (drf-spectacular): the shapes of the
answers every key-addressed operation may give (307 with Location, 202, 304, 412, 413,
503 with Retry-After), the headers (ETag, If-Match, If-None-Match) and the API-key
security schemes; `add_common_answers` adds 401 and 403 wherever a key is needed, the
HTTP server's own 414, and Server-Timing on every answer."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import serializers, status

from kvstore.api.shapes import (
    AcceptedSerializer,
    ErrorSerializer,
    PreconditionSerializer,
    RedirectSerializer,
)

HEADER = OpenApiParameter.HEADER
ANY_JSON = OpenApiTypes.ANY


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <key>`, or Basic with the key as the password."""

    target_class = "kvstore.api.auth.ApiKeyAuthentication"
    name = ["bearerAuth", "basicAuth"]

    def get_security_requirement(self, auto_schema):
        return [{"bearerAuth": []}, {"basicAuth": []}]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "An API key."},
            {
                "type": "http",
                "scheme": "basic",
                "description": "Any user name, the API key as the password.",
            },
        ]


def error(description, serializer=ErrorSerializer):
    return OpenApiResponse(serializer, description=description)


def header(name, codes, description, required=True, type=str):
    return OpenApiParameter(
        name, type, HEADER, required=required, description=description, response=codes
    )


ETAG_CODES = [200, 201, 202, 204, 304]
ETAG = header("ETag", ETAG_CODES, 'The entry\'s version, "partition-offset".')
RETRY_AFTER = header("Retry-After", [503, 504], "Seconds to wait.", type=int)
REDIRECT_HEADERS = [
    header("Location", [307], "The same path and query on the key's owner."),
    header("X-Kvstore-Partition", [307], "The key's partition.", type=int),
    header("X-Kvstore-Owner", [307], "The base URL of the partition's owner."),
]
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    HEADER,
    description='Write only if the entry is at one of these versions: "2-41".',
)
IF_NONE_MATCH_READ = OpenApiParameter(
    "If-None-Match", str, HEADER, description="304 when the ETag is one of these."
)
IF_NONE_MATCH_WRITE = OpenApiParameter(
    "If-None-Match", str, HEADER, enum=["*"], description="*: create only."
)
CONSISTENCY = OpenApiParameter(
    "consistency",
    str,
    enum=["cache", "strong"],
    description="strong: first wait until the cache has reached Kafka's end offset.",
)


def limit(maximum):
    return OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": 100},
        description="How many, at most.",
    )


LIMIT = limit(1000)
AFTER = OpenApiParameter("after", str, description="Only keys after this one.")

REDIRECT = error(
    "Another instance owns the key's partition: the same request there.",
    RedirectSerializer,
)
UNAVAILABLE = error(
    "Kafka or the key's partition cannot be served right now; certainly nothing was "
    "written."
)
OUTCOME_UNKNOWN = error(
    "write_outcome_unknown: the record was handed to Kafka and no answer came in time; "
    "it may or may not be in the log, now or later."
)
BAD_REQUEST = error("Malformed JSON, invalid fields, a bad key or parameter.")
NOT_FOUND = error("No such entry (or no such URL: a key cannot contain '/').")
PRECONDITION = error(
    "If-Match / If-None-Match (or must-exist) did not hold: found stale before writing "
    "(nothing written), or decided by the log (recorded, took no effect).",
    PreconditionSerializer,
)
TOO_LARGE = error("Larger than the topic takes; nothing was written.")
ACCEPTED = OpenApiResponse(
    AcceptedSerializer,
    description="Durable in Kafka, not confirmed here in time: accepted_not_applied "
    "(will take effect) or accepted_undecided (a conditional write the log decides).",
)
KEYED = [RETRY_AFTER, *REDIRECT_HEADERS]


def key_parameter(description):
    return OpenApiParameter(
        "key",
        KEY,
        OpenApiParameter.PATH,
        description=f"{description} 1 to 255 bytes of UTF-8, no control characters.",
    )


# JSON Schema counts characters, the store bytes: a key of 255 characters may still
# be too long (400).
KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f/]+$",
}


def page_of(name, item):
    """A list page: {"results": [...], "next": URL or null} (one object, although the
    action is a list)."""
    fields = {
        "results": item(many=True),
        "next": serializers.URLField(allow_null=True),
    }
    page = type(name, (serializers.Serializer,), fields)
    return extend_schema_serializer(many=False, component_name=name)(page)


def namespace_schema(
    name, value, written_value, listed, key_description, put_creates=True, patch=False
):
    """extend_schema_view for a NamespaceViewSet: `value` is what GET answers,
    `written_value` what writes take, `listed` the serializer of a listed item (its
    page is the component `{name}Page`); `put_creates`: PUT may answer 201; `patch`:
    PATCH exists."""
    key = key_parameter(key_description)
    write = {
        status.HTTP_202_ACCEPTED: ACCEPTED,
        status.HTTP_307_TEMPORARY_REDIRECT: REDIRECT,
        status.HTTP_400_BAD_REQUEST: BAD_REQUEST,
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_412_PRECONDITION_FAILED: PRECONDITION,
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: TOO_LARGE,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
        status.HTTP_504_GATEWAY_TIMEOUT: OUTCOME_UNKNOWN,
    }
    put_codes = {status.HTTP_200_OK: value}
    if put_creates:
        put_codes[status.HTTP_201_CREATED] = value
    views = dict(
        list=extend_schema(
            parameters=[LIMIT, AFTER, RETRY_AFTER],
            responses={
                status.HTTP_200_OK: page_of(f"{name}Page", listed),
                status.HTTP_400_BAD_REQUEST: BAD_REQUEST,
                status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
            },
        ),
        retrieve=extend_schema(
            parameters=[key, CONSISTENCY, IF_NONE_MATCH_READ, ETAG, *KEYED],
            responses={
                status.HTTP_200_OK: value,
                status.HTTP_304_NOT_MODIFIED: OpenApiResponse(
                    description="Unchanged since the ETag sent in If-None-Match."
                ),
                status.HTTP_307_TEMPORARY_REDIRECT: REDIRECT,
                status.HTTP_400_BAD_REQUEST: BAD_REQUEST,
                status.HTTP_404_NOT_FOUND: NOT_FOUND,
                status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
            },
        ),
        update=extend_schema(
            request=written_value,
            parameters=[key, IF_MATCH, IF_NONE_MATCH_WRITE, ETAG, *KEYED],
            responses={**put_codes, **write},
        ),
        destroy=extend_schema(
            parameters=[key, IF_MATCH, ETAG, *KEYED],
            responses={
                status.HTTP_204_NO_CONTENT: OpenApiResponse(description="Deleted."),
                **write,
            },
        ),
    )
    if patch:
        views["partial_update"] = extend_schema(
            parameters=[key, IF_MATCH, ETAG, *KEYED],
            responses={status.HTTP_200_OK: value, **write},
        )
    return extend_schema_view(**views)


def add_common_answers(result, generator, request, public):
    """Postprocessing hook: answers any operation may get. Every one that needs a key
    may answer 401 (with the challenge) and 403; every request line longer than
    gunicorn takes (4094 bytes) is answered 414 by gunicorn itself, before Django;
    every other answer carries Server-Timing."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("414", URI_TOO_LONG)
            if not operation.get("security"):
                continue
            responses.setdefault("401", _error_answer("No key, or an unknown one."))
            responses["401"]["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "required": True,
                    "description": "Bearer, or Basic for browsers.",
                }
            }
            responses.setdefault(
                "403", _error_answer("The key's role may not do this.")
            )
        _add_server_timing(operations)
    return result


SERVER_TIMING = {
    "schema": {"type": "string"},
    "required": True,
    "description": "Where the answer's time went, in milliseconds: route, cache, "
    "produce, apply_wait, peers (each when it happened) and total, e.g. "
    "`route;dur=0.05, cache;dur=0.02, total;dur=0.61`.",
}


def _add_server_timing(operations):
    """Every answer Django makes carries Server-Timing (not gunicorn's own 414)."""
    for operation in operations.values():
        for code, response in operation["responses"].items():
            if code != "414":
                response.setdefault("headers", {})["Server-Timing"] = SERVER_TIMING


URI_TOO_LONG = {
    "description": "The URL is too long for the HTTP server (an HTML page).",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


def _error_answer(description):
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
