"""Routes of the namespace APIs; item URLs work with or without a trailing slash."""
from rest_framework.routers import SimpleRouter

from kvstore.views import KeyValueViewSet
from users.views import UserViewSet


class Router(SimpleRouter):
    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"  # DRF's constructor takes only a boolean


router = Router()
router.register("users", UserViewSet, basename="user")
router.register("kv", KeyValueViewSet, basename="kv")

urlpatterns = router.urls
