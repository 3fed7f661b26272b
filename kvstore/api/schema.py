"""The OpenAPI description of the HTTP face (drf-spectacular): the shapes of the
answers every key-addressed operation may give (307 with Location, 202, 304, 412, 413,
422, 503 with Retry-After), the headers (ETag, Kvstore-Position, If-Match,
If-None-Match, Prefer, Kvstore-Min-Position, Idempotency-Key) and the API-key security
schemes; `add_common_answers` adds 401 and 403 wherever a key is needed, the HTTP
server's own 414, and Server-Timing on every answer."""

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
from kvstore.positions import HEADER as POSITION_HEADER, MIN_HEADER

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
    "If-None-Match",
    str,
    HEADER,
    description="304 when the ETag is one of these; with Prefer: wait=N, first wait "
    "up to N seconds for the entry to change (200) or be deleted (404).",
)
IF_NONE_MATCH_WRITE = OpenApiParameter(
    "If-None-Match", str, HEADER, enum=["*"], description="*: create only."
)
POSITION_TEXT = (
    "The position vector the answer reflects, per partition the last offset: "
    "kv:2:41 or kv:0:41,3:17 (send it back as min_position)."
)
READ_POSITION = header(POSITION_HEADER, [200, 304], POSITION_TEXT)
MISSING_POSITION = header(POSITION_HEADER, [404], POSITION_TEXT, required=False)
WRITE_POSITION = header(
    POSITION_HEADER, [200, 201, 202, 204], "The written record's position: kv:2:41."
)
DECIDED_POSITION = header(
    POSITION_HEADER,
    [412],
    "When the log decided: the position of the record that took no effect.",
    required=False,
)
LIST_POSITION = header(POSITION_HEADER, [200], POSITION_TEXT)
REPLAYED = header(
    "Idempotent-Replayed",
    [200, 201, 204],
    "true: the first answer to an earlier request with this Idempotency-Key; "
    "nothing was written now.",
    required=False,
)
MIN_POSITION = OpenApiParameter(
    "min_position",
    str,
    description="First wait until the owner's cache reflects this position vector "
    "(a Kvstore-Position from an earlier answer); 503 not_caught_up if it does not "
    "within Prefer: wait.",
    pattern=r"^[A-Za-z0-9._-]+:([0-9]+:[0-9]+(,[0-9]+:[0-9]+)*)?$",
)
MIN_POSITION_HEADER = OpenApiParameter(
    MIN_HEADER, str, HEADER, description="The same as min_position, as a header."
)
PREFER = OpenApiParameter(
    "Prefer",
    str,
    HEADER,
    description="wait=N: wait up to N seconds (at most KVSTORE_MAX_WAIT) for "
    "min_position, or, with If-None-Match, for the entry to change (a long-poll).",
    pattern=r"^wait=[0-9]{1,9}$",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    HEADER,
    description="A retry with the same key and body gets the first answer and writes "
    "nothing (within KVSTORE_IDEMPOTENCY_WINDOW); the same key with another body: "
    "422.",
    pattern=r"^[\x21-\x7e]{1,255}$",
)
PREFIX = OpenApiParameter(
    "prefix",
    {
        "type": "string",
        "maxLength": 255,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    },
    description="Only keys that start with this (at most 255 bytes of UTF-8).",
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
REUSED = error(
    "idempotency_key_reused: the Idempotency-Key was first used with another request; "
    "nothing was written."
)
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
    """A list page: {"results": [...], "next": URL or null, "position": vector} (one
    object, although the action is a list)."""
    fields = {
        "results": item(many=True),
        "next": serializers.URLField(allow_null=True),
        "position": serializers.CharField(help_text=POSITION_TEXT),
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
        status.HTTP_422_UNPROCESSABLE_ENTITY: REUSED,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
        status.HTTP_504_GATEWAY_TIMEOUT: OUTCOME_UNKNOWN,
    }
    written = [ETAG, WRITE_POSITION, DECIDED_POSITION, REPLAYED, IDEMPOTENCY_KEY]
    put_codes = {status.HTTP_200_OK: value}
    if put_creates:
        put_codes[status.HTTP_201_CREATED] = value
    views = dict(
        list=extend_schema(
            parameters=[
                LIMIT,
                AFTER,
                PREFIX,
                MIN_POSITION,
                MIN_POSITION_HEADER,
                PREFER,
                LIST_POSITION,
                RETRY_AFTER,
            ],
            responses={
                status.HTTP_200_OK: page_of(f"{name}Page", listed),
                status.HTTP_400_BAD_REQUEST: BAD_REQUEST,
                status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
            },
        ),
        retrieve=extend_schema(
            parameters=[
                key,
                CONSISTENCY,
                IF_NONE_MATCH_READ,
                MIN_POSITION,
                MIN_POSITION_HEADER,
                PREFER,
                ETAG,
                READ_POSITION,
                MISSING_POSITION,
                *KEYED,
            ],
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
            parameters=[key, IF_MATCH, IF_NONE_MATCH_WRITE, *written, *KEYED],
            responses={**put_codes, **write},
        ),
        destroy=extend_schema(
            parameters=[key, IF_MATCH, *written, *KEYED],
            responses={
                status.HTTP_204_NO_CONTENT: OpenApiResponse(description="Deleted."),
                **write,
            },
        ),
    )
    if patch:
        views["partial_update"] = extend_schema(
            parameters=[key, IF_MATCH, *written, *KEYED],
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
