"""GET /api/{namespace}/watch: a watch as Server-Sent Events (kvstore.watch), and the
peers' GET /api/internal/decisions/{namespace}, which tells a watch on another instance
which records took no effect.

A stream holds one thread for its life (the store's worker class runs it in the bridge's
pool, which has a thread for every one of the instance's KVSTORE_MAX_WATCHES slots
beside `--threads`, kvstore.api.front) and one of those slots; the response is written
as the events come, with a send timeout (the bridge's SEND_TIMEOUT; under config.wsgi
on gunicorn's threaded worker, the socket's), so a client that stops reading is cut
off. Why this serving model: docs/WATCH.md.
"""

import re

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from kvstore import cluster, keys, positions, routing
from kvstore.api import params, schema, shapes
from kvstore.api.renderers import ValueJSONRenderer
from kvstore.conf import NAMESPACES, store_settings
from kvstore.errors import InvalidRequest, StoreUnavailable
from kvstore.partitioner import partition_for
from kvstore.repository import get_repository
from kvstore.watch import decisions as decided, history, hub as hubs, stream

NAMESPACE = OpenApiParameter("namespace", str, OpenApiParameter.PATH, enum=NAMESPACES)
SEND_TIMEOUT = 30.0  # seconds a write to a watch's client may take before it is cut
LAST_EVENT_ID = "Last-Event-ID"
_OFFSET = re.compile(r"[0-9]{1,18}")


class EventStreamRenderer(BaseRenderer):
    """Lets `Accept: text/event-stream` through content negotiation (the stream itself
    is written by the view, not rendered)."""

    media_type = "text/event-stream"
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise NotImplementedError("watch streams are written by the view")


class WatchView(APIView):
    """Puts and deletes of a key (`key`) or of keys starting with `prefix`, from
    `Last-Event-ID` or `from_position` (a position vector), else from now."""

    renderer_classes = [ValueJSONRenderer, EventStreamRenderer]
    # Not HEAD: a stream whose bytes the server never sends would never notice its
    # client leave, and would hold its thread and slot for good.
    http_method_names = ["get", "options"]

    @extend_schema(
        parameters=[
            NAMESPACE,
            schema.PREFIX,
            OpenApiParameter(
                "key", schema.KEY, description="Watch this one key (not a prefix)."
            ),
            OpenApiParameter(
                "from_position",
                str,
                description="Resume after this position vector (a list's position, "
                "or an event id); without it (and without Last-Event-ID): from now.",
            ),
            OpenApiParameter(
                LAST_EVENT_ID,
                str,
                schema.HEADER,
                description="The last event id seen (EventSource sends it when it "
                "reconnects): resume right after it; wins over from_position.",
            ),
            schema.header(
                positions.HEADER, [200], "The position vector the stream starts after."
            ),
            schema.RETRY_AFTER,
        ],
        responses={
            (status.HTTP_200_OK, "text/event-stream"): OpenApiResponse(
                shapes.EVENT_STREAM, description="The events, as they happen."
            ),
            status.HTTP_400_BAD_REQUEST: schema.BAD_REQUEST,
            status.HTTP_404_NOT_FOUND: schema.error("No such namespace."),
            status.HTTP_410_GONE: schema.error(
                "history_compacted: the log no longer holds everything after this "
                "position.",
                shapes.GoneSerializer,
            ),
            status.HTTP_503_SERVICE_UNAVAILABLE: schema.error(
                "too_many_watches (KVSTORE_MAX_WATCHES), or the log or the "
                "consumer cannot be read now."
            ),
        },
    )
    def get(self, request, namespace):
        settings = store_settings()
        if namespace not in settings.namespaces:
            raise NotFound("No such namespace.")
        prefix, key = params.prefix(request), request.query_params.get("key")
        if key is not None:
            routing.validate_key(key)
            if prefix:
                raise InvalidRequest("Watch a key or a prefix, not both.")
        repository = get_repository()
        with repository.reader.snapshot() as view:
            partitions = routing.topic_facts(view, namespace, settings).partitions
            lag_ms = view.compaction_lag_ms(namespace)
        start = _start(request, namespace, partitions)
        watched = [partition_for(key, partitions)] if key else range(partitions)
        slot = params.take_slot(repository)
        try:
            decisions = decided.Decisions(
                settings, repository.reader, repository.reads.changes
            )
            starts = _starts(settings, namespace, watched, start)
            if start is not None:
                history.check(settings, namespace, starts, lag_ms, decisions)
            watch = stream.Watch(namespace, starts, prefix, key, settings.watch_buffer)
            hub, upto = _join(settings, namespace, partitions, decisions, watch)
        except BaseException:
            repository.slots.release(slot)
            raise
        backlog = stream.backlog(settings, watch, upto, partitions, decisions)
        frames = stream.frames(watch, backlog, settings.watch_keepalive)
        closing = _Closing(frames, hub.leave, watch, repository.slots.release, slot)
        return _streaming(request, closing, watch)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            # Errors are JSON, whatever the client accepts (an EventSource sees the
            # status only).
            response.accepted_renderer = ValueJSONRenderer()
            response.accepted_media_type = "application/json"
        return response


def _start(request, namespace, partitions):
    """The position vector to resume after (Last-Event-ID, else from_position), or
    None for "from now"."""
    text = request.headers.get(LAST_EVENT_ID) or request.query_params.get(
        "from_position"
    )
    if not text:
        return None
    try:
        return positions.parse(text, namespace, partitions)
    except positions.PositionInvalid as exc:
        raise InvalidRequest(
            f"{LAST_EVENT_ID} / from_position: {exc}", code="invalid_position"
        ) from None


def _starts(settings, namespace, watched, start):
    """{partition: next offset wanted}: after `start`, or the log's end now."""
    if start is not None:
        return {p: start.get(p, -1) + 1 for p in watched}
    admin = cluster.shared_admin(settings)
    if admin is None:
        raise StoreUnavailable("Kafka cannot be reached to find where now is.")
    ends = admin.offsets(settings.topic(namespace), list(watched))
    return {p: ends[p] for p in watched}


def _join(settings, namespace, partitions, decisions, watch):
    """(the hub the watch joined, its tail then); the watch's floor set from it."""
    for _ in range(3):
        hub = hubs.hub_for(settings, namespace, partitions, decisions)
        try:
            upto = hub.join(watch)
        except hubs.Closed:
            continue
        for partition, start in watch.next.items():
            watch.floor[partition] = max(start, upto[partition])
        return hub, upto
    raise StoreUnavailable("The log of this namespace cannot be read right now.")


class _Closing:
    """The frames of a stream, and what to give back once the server closes it (also
    when it never started): the hub's place and the instance's slot."""

    def __init__(self, frames, leave, watch, release, slot):
        self.frames, self.closed = frames, False
        self.leave, self.watch, self.release, self.slot = leave, watch, release, slot

    def __iter__(self):
        return self.frames

    def close(self):
        if not self.closed:
            self.closed = True
            self.frames.close()
            self.leave(self.watch)
            self.release(self.slot)


def _streaming(request, body, watch):
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass events on at once
    response[positions.HEADER] = str(watch.vector())
    sock = request.META.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(SEND_TIMEOUT)
    return response


class DecisionsView(APIView):
    """GET /api/internal/decisions/{namespace}?partition=&from=&to=&wait= : the offsets
    in [from, through) whose records took no effect, `through` being as far towards
    `to` as this cache has applied after waiting at most `wait` seconds. Peers and
    admin keys."""

    required_role = keys.INTERNAL

    @extend_schema(
        parameters=[
            NAMESPACE,
            *(
                OpenApiParameter(name, {"type": "integer", "minimum": 0}, required=True)
                for name in ("partition", "from", "to", "wait")
            ),
        ],
        responses={
            status.HTTP_200_OK: shapes.NO_EFFECT,
            status.HTTP_400_BAD_REQUEST: schema.BAD_REQUEST,
            status.HTTP_404_NOT_FOUND: schema.error("No such namespace."),
            status.HTTP_410_GONE: OpenApiResponse(
                shapes.FORGOTTEN, description="Pruned below decided_from."
            ),
        },
    )
    def get(self, request, namespace):
        settings = store_settings()
        if namespace not in settings.namespaces:
            raise NotFound("No such namespace.")
        partition, start, end = (
            _whole(request, name) for name in ("partition", "from", "to")
        )
        seconds = min(float(_whole(request, "wait")), settings.max_wait)
        repository = get_repository()
        decisions = decided.Decisions(
            settings, repository.reader, repository.reads.changes
        )
        try:
            offsets, through = decided.answer(
                decisions, namespace, partition, start, end, seconds
            )
        except decided.Forgotten as gone:
            body = {"code": "decisions_forgotten", "detail": str(gone)}
            body["decided_from"] = gone.decided_from
            return Response(body, status=status.HTTP_410_GONE)
        return Response({"no_effect": sorted(offsets), "through": through})


def _whole(request, name):
    raw = request.query_params.get(name, "")
    if not _OFFSET.fullmatch(raw):
        raise ParseError(f"{name} must be a whole number.")
    return int(raw)
