"""The store's URLs: the API root, the kv namespace, watches, the cluster views, the
peer endpoints, the OpenAPI schema and its docs, health, the metrics and the cluster
page. A project mounts them with `path("", include("kvstore.api.urls"))`."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from kvstore.api import instance, operator, views, watch


class NamespaceRouter(SimpleRouter):
    """Item URLs work with or without a trailing slash."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"  # DRF's constructor takes only a boolean


router = NamespaceRouter()
router.register("kv", views.KeyValueViewSet, basename="kv")

urlpatterns = [
    path("api/", views.ApiRootView.as_view(), name="api-root"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Before the namespaces' routers: "watch" is no key (kvstore.api.middleware).
    re_path(
        r"^api/(?P<namespace>[^/]+)/watch/?$", watch.WatchView.as_view(), name="watch"
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include(router.urls)),
    path("api/cluster", instance.ClusterView.as_view(), name="cluster"),
    path(
        "api/cluster/status",
        operator.ClusterStatusView.as_view(),
        name="cluster-status",
    ),
    path("api/internal/group", instance.GroupView.as_view(), name="internal-group"),
    path(
        "api/internal/entries/<str:namespace>",
        instance.PartitionEntriesView.as_view(),
        name="partition-entries",
    ),
    path(
        "api/internal/decisions/<str:namespace>",
        watch.DecisionsView.as_view(),
        name="decisions",
    ),
    path("healthz", instance.healthz, name="healthz"),
    path("readyz", instance.ready, name="readyz"),
    # For operators, outside the API and its schema.
    path("metrics", operator.prometheus, name="metrics"),
    path("cluster/", operator.cluster_page, name="cluster-page"),
]
