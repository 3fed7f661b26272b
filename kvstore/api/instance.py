"""What an instance says about itself and to its peers: the cluster view
(/api/cluster), the peer endpoints (/api/internal/group, /api/internal/entries/{ns})
and the health probes (/healthz, /readyz)."""

import time

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from kvstore import cache, cluster, keys, lease, writes
from kvstore.api import params, schema, shapes
from kvstore.api.views import MAX_PAGE, NUMBER, parse_limit
from kvstore.conf import NAMESPACES, store_settings
from kvstore.repository import get_repository


class PartitionEntriesView(APIView):
    """GET /api/internal/entries/{namespace}?partitions=0,3&after=&limit= : rows of
    partitions this instance serves itself, for a peer gathering a list. Never
    redirects; only peers (the cluster secret) and admin keys."""

    required_role = keys.INTERNAL

    @extend_schema(
        parameters=[
            OpenApiParameter("namespace", str, OpenApiParameter.PATH, enum=NAMESPACES),
            OpenApiParameter(
                "partitions",
                str,
                required=True,
                pattern=r"^[0-9]+(,[0-9]+)*$",
                description="Comma-separated partition numbers.",
            ),
            OpenApiParameter("after", str),
            schema.limit(MAX_PAGE + 1),
            schema.PREFIX,
            schema.MIN_POSITION,
            OpenApiParameter(
                "wait",
                {"type": "integer", "minimum": 0},
                description="Seconds to wait for min_position.",
            ),
            schema.RETRY_AFTER,
        ],
        responses={
            status.HTTP_200_OK: shapes.ENTRY_ROWS,
            status.HTTP_400_BAD_REQUEST: schema.BAD_REQUEST,
            status.HTTP_404_NOT_FOUND: schema.error("No such namespace."),
            status.HTTP_503_SERVICE_UNAVAILABLE: schema.UNAVAILABLE,
        },
    )
    def get(self, request, namespace):
        if namespace not in store_settings().namespaces:
            raise NotFound("No such namespace.")
        raw = request.query_params.get("partitions", "")
        parts = raw.split(",")
        if not all(NUMBER.fullmatch(part) for part in parts):
            raise ParseError(
                "partitions must be a comma-separated list of partition numbers."
            )
        partitions = [int(part) for part in parts]
        limit = parse_limit(request, maximum=MAX_PAGE + 1)
        after = request.query_params.get("after")
        wait = params.peer_wait(request, namespace)
        rows, applied = get_repository().local_rows(
            namespace, partitions, after, limit, params.prefix(request), wait
        )
        return Response(
            {
                "entries": [list(row) for row in rows],
                "positions": {str(p): o for p, o in applied.items()},
            }
        )


class GroupView(APIView):
    """GET /api/internal/group: the group as this instance last heard it (generation,
    partition → owner, members), and whether its consumer still follows the group (it
    runs and is not stopping), for a peer draining its stop. Peers and admin keys."""

    required_role = keys.INTERNAL

    @extend_schema(responses={status.HTTP_200_OK: shapes.GROUP})
    def get(self, request):
        described = cluster.describe(get_repository().reader, store_settings())
        group = {name: described[name] for name in ("generation", "owners", "members")}
        consumer = described["consumer"]
        following = consumer["alive"] and not consumer["draining"]
        return Response({**group, "following": following})


class ClusterView(APIView):
    """GET /api/cluster: members, generation, partition → owner, and this instance's
    partitions. Admin keys, and peers (the cluster secret) gathering the cluster-wide
    status."""

    required_role = keys.INTERNAL

    @extend_schema(responses={status.HTTP_200_OK: shapes.CLUSTER})
    def get(self, request):
        settings = store_settings()
        admin = cluster.shared_admin(settings)
        return Response(cluster.describe(get_repository().reader, settings, admin))


class ProbeView(APIView):
    """A health probe: no key (probes carry none), GET and HEAD only."""

    authentication_classes = []
    permission_classes = [AllowAny]
    http_method_names = ["get", "head"]


class HealthView(ProbeView):
    @extend_schema(responses={status.HTTP_200_OK: {"type": "object"}})
    def get(self, request):
        """The process is alive."""
        return Response({"status": "ok"})


def readiness(request):
    """200 only when this instance can answer for every key: its consumer process runs
    and holds the membership lease, every partition it holds is restored, every other
    partition has a known owner this instance may redirect to, and its writes to Kafka
    are not failing."""
    repository = get_repository()
    settings = store_settings()
    described = cluster.describe(repository.reader, settings)
    restoring = [
        f"{p['namespace']}/{p['partition']}"
        for p in described["local"]
        if p["state"] == cache.RESTORING
    ]
    unowned = [int(p) for p, owner in described["owners"].items() if owner is None]
    consumer = described["consumer"]
    refused = described["refused_owners"]
    joined = described["generation"] is not None
    failing = writes.Health(writes.path_for(settings.cache_path)).failing_since(
        alive=lease.process_alive, recent=settings.produce_timeout + writes.FAILING_FOR
    )
    writes_failing = failing is not None and time.time() - failing >= writes.FAILING_FOR
    ready = (
        consumer["alive"]
        and consumer["lease"]
        and joined
        and not restoring
        and not unowned
        and not refused
        and not writes_failing
    )
    body = {
        "ready": ready,
        "consumer_alive": consumer["alive"],
        "consumer_error": consumer["last_error"],
        "lease": consumer["lease"],
        "generation": described["generation"],
        "partitions": len(described["local"]),
        "restoring": restoring,
        "unowned": unowned,
        "writes_failing_since": failing,
        # Partitions whose owner advertises a URL this instance may not redirect to
        # (KVSTORE_PEER_ALLOWLIST): every request for them is a 503 here.
        "refused_owners": refused,
    }
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return Response(body, status=code)


class ReadyView(ProbeView):
    @extend_schema(
        responses={
            status.HTTP_200_OK: shapes.READY,
            status.HTTP_503_SERVICE_UNAVAILABLE: OpenApiResponse(
                shapes.READY, description="Not ready: the body says why."
            ),
        }
    )
    def get(self, request):
        return readiness(request)


healthz = HealthView.as_view()
ready = ReadyView.as_view()
