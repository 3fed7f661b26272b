from django.urls import include, path
from rest_framework.routers import SimpleRouter

from people.views import UserViewSet

router = SimpleRouter()
router.register("users", UserViewSet, basename="user")
urlpatterns = [path("api/", include(router.urls))]
