"""How errors become HTTP answers: DRF's exception handler, the 307 to a key's owner
with its hop bound, and the JSON bodies of Django's own 404 and 500."""

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from kvstore.errors import BodyTooLarge, NotOwner, NotServing, StoreError

MAX_HOPS = 2
HOP_PARAM = "_hop"


def exception_handler(exc, context):
    """DRF's handler, with every error body shaped {"code", "detail"} (+ "errors" for
    field errors) and the store's errors' headers and data added."""
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
    location = None
    if isinstance(exc, NotOwner):
        request = context["request"]
        exc, location = redirect_or_loop(exc, request.path, request.query_params)
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
    return response


def redirect_or_loop(exc, path, query_params):
    """(NotOwner, its Location with the hop count raised), or past MAX_HOPS (a
    NotServing 503, None): instances whose views of the group disagree must not bounce a
    client between them forever."""
    query = query_params.copy()
    hops = query.get(HOP_PARAM, "0")
    hops = int(hops) if hops.isascii() and hops.isdigit() else MAX_HOPS
    if hops >= MAX_HOPS:
        loop = NotServing(
            f"Partition {exc.partition} is changing owners (redirected {hops} times); "
            "try again.",
            code="redirect_loop",
            partition=exc.partition,
        )
        return loop, None
    query[HOP_PARAM] = str(hops + 1)
    return exc, f"{exc.owner}{path}?{query.urlencode()}"


def error_body(exc):
    """The JSON body every API error shares: its stable code and its detail."""
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    return {"code": code, "detail": str(exc.detail)}


def json_response(exc, location=None):
    """An APIException (a StoreError, or DRF's 401 and 403 with the challenge in
    `auth_header`) as the JSON response the DRF handler makes, for code before DRF."""
    extra = getattr(exc, "extra", {})
    response = JsonResponse({**error_body(exc), **extra}, status=exc.status_code)
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


def not_found(request, exception=None):
    return JsonResponse({"code": "not_found", "detail": "No such URL."}, status=404)


def server_error(request):
    return JsonResponse(
        {"code": "server_error", "detail": "Internal error."}, status=500
    )
