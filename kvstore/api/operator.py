"""What an operator watches: the cluster-wide status (JSON, what `kvstore_status`
prints), the Prometheus metrics at /metrics and the cluster page at /cluster/. All of
them need an admin key when KVSTORE_AUTH=required; a browser is asked for it (Basic,
the key as the password)."""

from django.http import HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from kvstore import cluster, gather, keys, metrics, overview
from kvstore.api import shapes
from kvstore.api.handlers import method_not_allowed, refusal
from kvstore.conf import store_settings
from kvstore.repository import get_repository

READ_ONLY = ("GET", "HEAD")


class ClusterStatusView(APIView):
    """GET /api/cluster/status: the whole cluster, from Kafka's group coordinator and
    every member's /api/cluster. Admin keys only."""

    required_role = keys.ADMIN

    @extend_schema(responses={status.HTTP_200_OK: shapes.CLUSTER_STATUS})
    def get(self, request):
        settings = store_settings()
        admin = cluster.shared_admin(settings)
        # Without Kafka, the members and owners of this instance's last assignment.
        local = cluster.describe(get_repository().reader, settings, admin)
        found = overview.collect(settings, gather.peer_headers(), admin, local)
        return Response(found)


def _operator_page(view):
    """An admin-only GET/HEAD page outside DRF: JSON 401/403/405 like the API's."""

    def page(request):
        if request.method not in READ_ONLY:
            return method_not_allowed(request, READ_ONLY)
        refused = refusal(request, keys.ADMIN)
        return refused if refused is not None else view(request)

    page.__doc__ = view.__doc__
    page.csrf_exempt = True  # it changes nothing: any other method is a 405
    return page


@_operator_page
def prometheus(request):
    """GET /metrics: every web worker's figures and the consumer's, for Prometheus."""
    settings = store_settings()
    body, content_type = metrics.exposition(
        lambda: cluster.describe(
            get_repository().reader, settings, cluster.shared_admin(settings)
        )
    )
    return HttpResponse(body, content_type=content_type)


@_operator_page
def cluster_page(request):
    """GET /cluster/: members, the partition → owner map and lag, refreshed every
    couple of seconds from /api/cluster/status by the page's own script."""
    return render(request, "kvstore/cluster.html", {"refresh_ms": 2000})
