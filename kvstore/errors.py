"""The store's exceptions. HTTP outcomes carry their status code, a stable error code, headers and data;
`exception_handler` renders every API error as JSON: {"code": ..., "detail": ..., ...}."""
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler


class StoreError(APIException):
    """Base of the store's HTTP errors; `default_code` is the stable `code` of the JSON body."""

    headers = {}
    extra = {}


class StoreUnavailable(StoreError):
    """Kafka could not be reached or refused the request; nothing was acknowledged."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Kafka is unavailable; nothing was written."
    default_code = "store_unavailable"

    def __init__(self, detail=None, wait=2):
        super().__init__(detail)
        self.wait = wait


class NotServing(StoreError):
    """This instance cannot answer for a partition right now (restoring, moving, consumer gone)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "not_serving"

    def __init__(self, detail, code="not_serving", wait=1, partition=None):
        super().__init__(detail, code)
        self.wait = wait
        self.extra = {"partition": partition} if partition is not None else {}
        self.headers = {"X-Kvstore-Partition": str(partition)} if partition is not None else {}


class NotOwner(StoreError):
    """Another instance owns the key's partition: 307 to the same path there (method and body kept)."""

    status_code = status.HTTP_307_TEMPORARY_REDIRECT
    default_code = "not_owner"

    def __init__(self, owner, partition):
        super().__init__(f"Partition {partition} is served by {owner}.")
        self.owner, self.partition = owner, partition
        self.extra = {"partition": partition, "owner": owner}
        self.headers = {"X-Kvstore-Partition": str(partition), "X-Kvstore-Owner": owner}


class InvalidKey(StoreError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_key"


class RecordTooLarge(StoreError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "record_too_large"


class PreconditionFailed(StoreError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"

    def __init__(self, detail, current_version=None):
        super().__init__(detail)
        self.extra = {"current_version": current_version}


class TopicMisconfigured(Exception):
    """A namespace topic exists but cannot serve as the store's database (not compacted, wrong size)."""


class BodyTooLarge(StoreError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"
    default_detail = "The request body is larger than this server accepts."


def exception_handler(exc, context):
    """DRF's handler, with every error body shaped {"code", "detail"} (+ "errors" for field errors)."""
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
    if isinstance(exc, NotOwner):
        request = context["request"]
        exc, location = redirect_or_loop(exc, request.path, request.query_params)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        errors = response.data
        detail = "Invalid input." if isinstance(errors, dict) else " ".join(str(e) for e in errors)
        response.data = {"code": "invalid", "detail": detail, "errors": errors}
    elif isinstance(exc, APIException):
        response.data = _body(exc)
    if isinstance(exc, StoreError):
        response.data.update(exc.extra)
        for name, value in exc.headers.items():
            response[name] = value
    if isinstance(exc, NotOwner):
        response["Location"] = location
    return response


MAX_HOPS = 2
HOP_PARAM = "_hop"


def redirect_or_loop(exc, path, query_params):
    """(NotOwner, its Location with the hop count raised), or past MAX_HOPS (a NotServing 503, None):
    instances whose views of the group disagree must not bounce a client between them forever."""
    query = query_params.copy()
    hops = query.get(HOP_PARAM, "0")
    hops = int(hops) if hops.isdigit() else MAX_HOPS
    if hops >= MAX_HOPS:
        return NotServing(f"Partition {exc.partition} is changing owners (redirected {hops} times); try again.",
                          code="redirect_loop", partition=exc.partition), None
    query[HOP_PARAM] = str(hops + 1)
    return exc, f"{exc.owner}{path}?{query.urlencode()}"


def _body(exc):
    """The JSON body every API error shares: its stable code and its detail."""
    codes = exc.get_codes()
    return {"code": codes if isinstance(codes, str) else exc.default_code, "detail": str(exc.detail)}


def json_response(exc, location=None):
    """A StoreError as the same JSON response the DRF handler makes, for code that runs before DRF."""
    response = JsonResponse({**_body(exc), **exc.extra}, status=exc.status_code)
    for name, value in exc.headers.items():
        response[name] = value
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(exc.wait)
    if location:
        response["Location"] = location
    # Answered before CommonMiddleware, which would set it: without it the body goes chunked and some
    # clients (urllib3) drop the keep-alive connection on every redirect.
    response["Content-Length"] = str(len(response.content))
    return response
