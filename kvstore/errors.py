"""The store's exceptions. HTTP outcomes carry their status code, a stable error code and headers."""
from rest_framework import status
from rest_framework.exceptions import APIException


class StoreError(APIException):
    """Base of the store's errors; `default_code` is the stable `code` of the JSON error body."""


class StoreUnavailable(StoreError):
    """Kafka could not be reached or refused the request; nothing was acknowledged."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Kafka is unavailable; nothing was written."
    default_code = "store_unavailable"

    def __init__(self, detail=None, wait=2):
        super().__init__(detail)
        self.wait = wait


class TopicMisconfigured(Exception):
    """A namespace topic exists but cannot serve as the store's database (not compacted, wrong size)."""
