"""The log: the one package that imports the Kafka client (kafka-python).

Everything else talks to what is exported here and sees only the store's own exceptions
(`StoreUnavailable`), never kafka-python's types or errors.
"""

from kvstore.log.admin import (
    Admin,
    GroupMember,
    GroupState,
    TopicState,
    admin,
    open_admin,
)
from kvstore.log.bulk import BulkProducer, LogRecord, read_all_records, read_latest
from kvstore.log.common import client_config
from kvstore.log.consumer import GroupConsumer
from kvstore.log.producer import RECORD_OVERHEAD, Producer, Written
from kvstore.log.reader import PartitionReader, Record

__all__ = [
    "Admin",
    "GroupMember",
    "GroupState",
    "BulkProducer",
    "LogRecord",
    "read_all_records",
    "read_latest",
    "GroupConsumer",
    "PartitionReader",
    "Producer",
    "RECORD_OVERHEAD",
    "Record",
    "TopicState",
    "Written",
    "admin",
    "client_config",
    "open_admin",
]
