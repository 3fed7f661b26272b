"""URL map: the namespaces' APIs, and health endpoints. Unknown URLs and crashes answer JSON."""
from django.http import JsonResponse
from django.urls import include, path

from kvstore import views

urlpatterns = [
    path("api/", include("users.urls")),
    path("api/cluster", views.ClusterView.as_view(), name="cluster"),
    path("api/internal/entries/<str:namespace>", views.PartitionEntriesView.as_view(), name="partition-entries"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]


def not_found(request, exception=None):
    return JsonResponse({"code": "not_found", "detail": "No such URL."}, status=404)


def server_error(request):
    return JsonResponse({"code": "server_error", "detail": "Internal error."}, status=500)


handler404 = not_found
handler500 = server_error
