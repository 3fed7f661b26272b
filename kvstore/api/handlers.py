"""How errors become HTTP answers: DRF's exception handler, the 307 to a key's owner
with its hop bound, and the JSON bodies of Django's own 400, 403, 404, 405 and 500."""

from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied as DjangoPermissionDenied,
    RequestDataTooBig,
)
from django.http import Http404, JsonResponse
from django.views.debug import SafeExceptionReporterFilter
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from kvstore.api import auth, redirects
from kvstore.errors import BodyTooLarge, NotOwner, NotServing, StoreError

MAX_HOPS = 2
HOP_PARAM = redirects.HOP_PARAM


def exception_handler(exc, context):
    """DRF's handler, with every error body shaped {"code", "detail"} (+ "errors" for
    field errors) and the store's errors' headers and data added."""
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
    # DRF answers these two with a body of only "detail"; ours carry a code too.
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    location = None
    if isinstance(exc, NotOwner):
        exc, location = redirect_or_loop(exc, context["request"])
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        errors = response.data
        detail = (
            "Invalid input." if isinstance(errors, dict) else " ".join(map(str, errors))
        )
        response.data = {"code": "invalid", "detail": detail, "errors": errors}
    elif isinstance(exc, APIException):
        response.data = error_body(exc)
    if isinstance(exc, StoreError):
        response.data.update(exc.extra)
        for name, value in exc.headers.items():
            response[name] = value
    if location:
        response["Location"] = location
    response.error_code = response.data.get("code", "")
    return response


def redirect_or_loop(exc, request):
    """(NotOwner, its Location with the hop count raised), or past MAX_HOPS (a
    NotServing 503, None): instances whose views of the group disagree must not bounce a
    client between them forever. A malformed hop count is (ParseError, None)."""
    try:
        hops = redirects.hop_count(request)
    except ParseError as malformed:
        return malformed, None
    if hops >= MAX_HOPS:
        loop = NotServing(
            f"Partition {exc.partition} is changing owners (redirected {hops} times); "
            "try again.",
            code="redirect_loop",
            partition=exc.partition,
        )
        return loop, None
    return exc, redirects.location(exc.owner, request, hops + 1)


def refusal(request, need):
    """The 401 or 403 JSON answer when the caller may not do `need`, else None: for
    code outside DRF's views (the redirecting middleware, the operator's pages)."""
    try:
        auth.enforce(request, need)
    except APIException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            exc.auth_header = auth.challenge(request)
        return json_response(exc)
    return None


def error_body(exc):
    """The JSON body every API error shares: its stable code and its detail."""
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    return {"code": code, "detail": str(exc.detail)}


def json_response(exc, location=None):
    """An APIException (a StoreError's headers and data included, or DRF's 401 and 403
    with the challenge in `auth_header`) as the JSON response the DRF handler makes,
    for code before DRF."""
    body = {**error_body(exc), **getattr(exc, "extra", {})}
    response = JsonResponse(body, status=exc.status_code)
    response.error_code = body["code"]
    for name, value in getattr(exc, "headers", {}).items():
        response[name] = value
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(exc.wait)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    if location:
        response["Location"] = location
    # Answered before CommonMiddleware, which would set it: without it the body goes
    # chunked and some clients (urllib3) drop the keep-alive connection on every
    # redirect.
    response["Content-Length"] = str(len(response.content))
    return response


def bad_request(request, exception=None):
    """Django's 400: a disallowed Host header, or another request Django refuses."""
    if isinstance(exception, DisallowedHost):
        return _error(
            400, "disallowed_host", "This server does not answer for that Host."
        )
    return _error(400, "bad_request", "The request is malformed.")


def permission_denied(request, exception=None):
    return _error(403, "permission_denied", "Permission denied.")


def method_not_allowed(request, allowed):
    """405 for a plain Django view, with the Allow header."""
    response = _error(
        405, "method_not_allowed", f'Method "{request.method}" not allowed.'
    )
    response["Allow"] = ", ".join(allowed)
    return response


def not_found(request, exception=None):
    return _error(404, "not_found", "No such URL.")


def server_error(request):
    """An uncaught error. After a write it may have come after the record was handed
    to Kafka, so the answer claims nothing about what was written."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return _error(500, "server_error", "Internal error.")
    return _error(
        500,
        "server_error",
        "Internal error: whether this write was recorded is not known; read the key "
        "before retrying.",
    )


def _error(status_code, code, detail):
    response = JsonResponse({"code": code, "detail": detail}, status=status_code)
    response.error_code = code  # for the metrics (kvstore.api.observe)
    # Some of these are answered outside the middleware that would set it.
    response["Content-Length"] = str(len(response.content))
    return response


class SafeReporterFilter(SafeExceptionReporterFilter):
    """Django's filter for the DEBUG error page, which also hides passwords and keys
    inside dictionaries held by local variables (a Kafka client's configuration). The
    settings' own repr leaves the SASL password out (`kvstore.conf.KafkaSecurity`)."""

    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        if isinstance(value, dict):
            return self.cleanse_setting("", value)
        return value
