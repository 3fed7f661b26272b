"""URL map: the namespaces' APIs, cluster and health endpoints."""
from django.urls import include, path

urlpatterns = [
    path("api/", include("users.urls")),
]
