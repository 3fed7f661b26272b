"""The project's URL tree: the store's HTTP face (kv, cluster, health) and the users
app."""

from django.urls import include, path

urlpatterns = [
    path("", include("kvstore.api.urls")),
    path("api/", include("users.urls")),
]

handler400 = "kvstore.api.handlers.bad_request"
handler403 = "kvstore.api.handlers.permission_denied"
handler404 = "kvstore.api.handlers.not_found"
handler500 = "kvstore.api.handlers.server_error"
