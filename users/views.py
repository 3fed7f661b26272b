"""The users API: a small client of the store's repository, over `users`."""

import dataclasses

from drf_spectacular.utils import extend_schema
from rest_framework import status

from kvstore import idempotency
from kvstore.api import params, schema, shapes
from kvstore.api.views import NamespaceViewSet, link, require_body
from kvstore.repository import Condition
from users.serializers import UserSerializer

CREATED_LOCATION = schema.header(
    "Location", [201, 202], "The new user's URL.", required=True
)


@schema.namespace_schema(
    name="User",
    value=UserSerializer,
    written_value=UserSerializer,
    listed=UserSerializer,
    key_description="A user's id.",
    put_creates=False,
    patch=True,
)
class UserViewSet(NamespaceViewSet):
    """POST /api/users/ creates (server-made id); GET, PUT, PATCH, DELETE
    /api/users/{id}."""

    namespace = "users"
    lookup_field = "key"
    serializer_class = UserSerializer
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    fast_writes = True  # the hooks below read only the request's body and data

    def get_serializer(self, *args, **kwargs):
        return UserSerializer(*args, **kwargs)

    def to_value(self, request, partial=False):
        require_body(request)
        serializer = UserSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def merge(self, current, value, partial):
        if partial and current is not None and isinstance(current.value, dict):
            return {**current.value, **value}
        return value

    def write_condition(self, condition, partial):
        # Users are created only by POST: PUT and PATCH change an existing user (404
        # otherwise).
        return dataclasses.replace(condition, exists=True)

    def represent(self, entry):
        # A record written by another Kafka client may hold any JSON value, and its
        # own "id": the key is the id, and a value that is no object is shown as it is.
        if not isinstance(entry.value, dict):
            return {"id": entry.key, "value": entry.value}
        return {"id": entry.key, **{k: v for k, v in entry.value.items() if k != "id"}}

    def represent_listed(self, entry):
        return self.represent(entry)

    @extend_schema(
        request=UserSerializer,
        parameters=[
            schema.ETAG,
            CREATED_LOCATION,
            schema.WRITE_POSITION,
            schema.DECIDED_POSITION,
            schema.REPLAYED,
            schema.IDEMPOTENCY_KEY,
            *schema.KEYED,
        ],
        responses={
            status.HTTP_201_CREATED: UserSerializer,
            status.HTTP_202_ACCEPTED: schema.ACCEPTED,
            status.HTTP_307_TEMPORARY_REDIRECT: schema.error(
                "With an Idempotency-Key the new id is made from it, and another "
                "instance may own it: the same request there.",
                shapes.RedirectSerializer,
            ),
            status.HTTP_400_BAD_REQUEST: schema.BAD_REQUEST,
            status.HTTP_412_PRECONDITION_FAILED: schema.error(
                "The Idempotency-Key's user exists but its first answer has expired "
                "(KVSTORE_IDEMPOTENCY_WINDOW); nothing was written.",
                shapes.PreconditionSerializer,
            ),
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: schema.TOO_LARGE,
            status.HTTP_422_UNPROCESSABLE_ENTITY: schema.REUSED,
            status.HTTP_503_SERVICE_UNAVAILABLE: schema.UNAVAILABLE,
            status.HTTP_504_GATEWAY_TIMEOUT: schema.OUTCOME_UNKNOWN,
        },
    )
    def create(self, request):
        value = self.to_value(request)
        idem = params.idempotent(request, request.data)
        if idem is None:
            key = self.repository.new_key(self.namespace)
            result = self.repository.put(self.namespace, key, value)
        else:
            # Every retry creates the same id (whose owner may be another instance:
            # then a 307), and only one of them can create it.
            key = idempotency.derived_key(self.namespace, idem.scope)
            result = self.repository.put(
                self.namespace, key, value, Condition(absent=True), idem
            )
        location = link("users-detail", key=key)
        return self.written(
            result, status.HTTP_201_CREATED, headers={"Location": location}
        )
