"""The users API's routes; item URLs work with or without a trailing slash."""

from kvstore.api.urls import NamespaceRouter
from users.views import UserViewSet

router = NamespaceRouter()
router.register("users", UserViewSet, basename="users")

urlpatterns = router.urls
