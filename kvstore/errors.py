"""The store's exceptions: the vocabulary every layer speaks.

Each HTTP outcome carries its status code, a stable error `code`, its headers and extra
data (`wait` becomes `Retry-After`); `kvstore.api.handlers` renders them as JSON.
"""

from rest_framework import status
from rest_framework.exceptions import APIException


class StoreError(APIException):
    """Base of the store's HTTP errors; `default_code` is the body's stable `code`."""

    headers = {}
    extra = {}
    wait = None


class StoreUnavailable(StoreError):
    """Kafka could not be reached or refused the request; nothing was acknowledged."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Kafka is unavailable; nothing was written."
    default_code = "store_unavailable"

    def __init__(self, detail=None, wait=2):
        super().__init__(detail)
        self.wait = wait


class KafkaTransient(StoreUnavailable):
    """Kafka did not answer this time (a broker down or moving, a connection lost):
    the same call may well succeed a moment later, so a long-running loop goes on."""


class MemberFenced(StoreUnavailable):
    """Kafka fenced this consumer-group member: a member with the same
    group.instance.id joined after it (most often its own next incarnation, after a
    stall). It must join again as a new member."""


class WriteOutcomeUnknown(StoreError):
    """The record was handed to Kafka and no answer came in time: it may or may not be
    in the log, now or later. Never "nothing was written"."""

    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_code = "write_outcome_unknown"

    def __init__(self, detail=None, wait=2):
        super().__init__(detail)
        self.wait = wait


class NotServing(StoreError):
    """This instance cannot answer for a partition now (restoring, moving, consumer
    gone)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "not_serving"

    def __init__(self, detail, code="not_serving", wait=1, partition=None):
        super().__init__(detail, code)
        self.wait = wait
        if partition is not None:
            self.extra = {"partition": partition}
            self.headers = {"X-Kvstore-Partition": str(partition)}


class NotOwner(StoreError):
    """Another instance owns the key's partition: 307 to the same path there."""

    status_code = status.HTTP_307_TEMPORARY_REDIRECT
    default_code = "not_owner"

    def __init__(self, owner, partition):
        super().__init__(f"Partition {partition} is served by {owner}.")
        self.owner, self.partition = owner, partition
        self.extra = {"partition": partition, "owner": owner}
        self.headers = {"X-Kvstore-Partition": str(partition), "X-Kvstore-Owner": owner}


class EntryNotFound(StoreError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"
    default_detail = "No such entry."


class InvalidKey(StoreError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_key"


class InvalidPartition(StoreError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_partition"


class InvalidValue(StoreError):
    """A body that is JSON but not a value the store keeps (see `kvstore.values`)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_value"


class InvalidRequest(StoreError):
    """A request the store cannot honour as sent (a malformed header or parameter)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"


class LengthRequired(StoreError):
    """A body sent without Content-Length (chunked): Django would read it as empty."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_code = "length_required"
    default_detail = (
        "Send the request body with a Content-Length; chunked bodies are not accepted."
    )


class RecordTooLarge(StoreError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "record_too_large"


class BodyTooLarge(StoreError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"
    default_detail = "The request body is larger than this server accepts."


class PreconditionFailed(StoreError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"

    def __init__(self, detail, current_version=None):
        super().__init__(detail)
        self.extra = {"current_version": current_version}


class IdempotencyKeyReused(StoreError):
    """The Idempotency-Key was first used with another request (method or body)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was used with another request; nothing was written."
    )


class HistoryGone(StoreError):
    """A watch cannot resume from where the client asks: the log no longer holds all
    that happened since (compaction), so the client lists again and watches from the
    list's position."""

    status_code = status.HTTP_410_GONE
    default_code = "history_compacted"

    def __init__(self, detail, oldest):
        super().__init__(detail)
        self.extra = {"oldest_position": str(oldest)}


class TopicMisconfigured(Exception):
    """A namespace topic exists but cannot serve as the database (not compacted, wrong
    size)."""
