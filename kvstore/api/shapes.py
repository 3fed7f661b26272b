"""The bodies the API answers with, for the OpenAPI document: serializers (they become
named components) and JSON Schema for the cluster, readiness and peer answers."""

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error: a stable code and a human detail (some carry more fields)."""

    code = serializers.CharField()
    detail = serializers.CharField()


class RedirectSerializer(ErrorSerializer):
    partition = serializers.IntegerField()
    owner = serializers.URLField()


class PreconditionSerializer(ErrorSerializer):
    current_version = serializers.CharField(allow_null=True)


class GoneSerializer(ErrorSerializer):
    """410: the history a watch needs from its position is gone."""

    oldest_position = serializers.CharField(
        help_text="Per partition that lost history, the oldest position a watch may "
        "resume from; list again and watch from the list's position."
    )


class ListedEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.JSONField()
    version = serializers.CharField()


class AcceptedSerializer(serializers.Serializer):
    """202: durable in Kafka, not confirmed by this instance in time."""

    code = serializers.ChoiceField(
        choices=["accepted_not_applied", "accepted_undecided"]
    )
    version = serializers.CharField()
    detail = serializers.CharField()


LINKS = {
    "type": "object",
    "additionalProperties": {"type": "string", "format": "uri"},
}
_NULLABLE_INT = {"type": "integer", "nullable": True}
CLUSTER = {
    "type": "object",
    "required": ["instance", "consumer", "generation", "members", "owners", "local"],
    "properties": {
        "instance": {"type": "string"},
        "consumer": {
            "type": "object",
            "properties": {
                "alive": {"type": "boolean"},
                "lease": {"type": "boolean"},
                "lease_left": {"type": "number", "nullable": True},
                "last_error": {"type": "string", "nullable": True},
                "heartbeat_age": {"type": "number", "nullable": True},
                "draining": {"type": "boolean"},
                "records_applied": {"type": "integer"},
                "rebalances": {"type": "integer"},
            },
        },
        "generation": _NULLABLE_INT,
        "members": {"type": "array", "items": {"type": "string"}},
        "namespaces": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "topic": {"type": "string"},
                    "partitions": {"type": "integer"},
                },
            },
        },
        "owners": {
            "type": "object",
            "description": "partition → owner base URL (null: nobody yet)",
            "additionalProperties": {"type": "string", "nullable": True},
        },
        "local": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "namespace": {"type": "string"},
                    "partition": {"type": "integer"},
                    "state": {"type": "string", "enum": ["restoring", "ready"]},
                    "applied_offset": {"type": "integer"},
                    "end_offset": _NULLABLE_INT,
                    "lag": _NULLABLE_INT,
                    "restore_remaining": {"type": "integer"},
                    "skipped": {"type": "integer"},
                    "misplaced": {"type": "integer"},
                },
            },
        },
    },
}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_PARTITION_NUMBERS = {"type": "array", "items": {"type": "integer"}}
_STATUS_OFFSETS = {
    "type": "object",
    "description": "applied, end and lag: the owner's figures, or the group's "
    "committed offset (from: committed) when the owner said nothing",
    "properties": {
        "applied": _NULLABLE_INT,
        "end": _NULLABLE_INT,
        "lag": _NULLABLE_INT,
        "from": {"type": "string", "enum": ["owner", "committed"]},
        "state": {"type": "string", "nullable": True, "enum": ["restoring", "ready"]},
        "restore_remaining": _NULLABLE_INT,
        "skipped": _NULLABLE_INT,
        "misplaced": _NULLABLE_INT,
    },
}
CLUSTER_STATUS = {
    "type": "object",
    "required": ["group", "source", "members", "partitions", "unready"],
    "properties": {
        "group": {"type": "string"},
        "source": {
            "type": "string",
            "enum": ["kafka", "instance"],
            "description": "where members and owners come from: Kafka's group "
            "coordinator, or this instance's last assignment when Kafka does not "
            "answer (kafka_error says why)",
        },
        "kafka_error": _NULLABLE_STRING,
        "group_state": _NULLABLE_STRING,
        "generation": _NULLABLE_INT,
        "namespaces": {"type": "array", "items": {"type": "string"}},
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "answered": {"type": "boolean"},
                    "reason": _NULLABLE_STRING,
                    "consumer_alive": {"type": "boolean", "nullable": True},
                    "lease": {"type": "boolean", "nullable": True},
                    "last_error": _NULLABLE_STRING,
                    "generation": _NULLABLE_INT,
                    "partitions": _PARTITION_NUMBERS,
                    "restoring": _PARTITION_NUMBERS,
                },
            },
        },
        "partitions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "partition": {"type": "integer"},
                    "owner": _NULLABLE_STRING,
                    "state": {
                        "type": "string",
                        "enum": [
                            "ready",
                            "restoring",
                            "moving",
                            "unowned",
                            "unreachable",
                            "not_serving",
                        ],
                    },
                    "reason": _NULLABLE_STRING,
                    "namespaces": {
                        "type": "object",
                        "additionalProperties": _STATUS_OFFSETS,
                    },
                },
            },
        },
        "unready": {
            **_PARTITION_NUMBERS,
            "description": "partitions without a ready owner",
        },
    },
}
GROUP = {
    "type": "object",
    "required": ["generation", "owners", "members"],
    "properties": {
        "generation": _NULLABLE_INT,
        "owners": CLUSTER["properties"]["owners"],
        "members": CLUSTER["properties"]["members"],
        "following": {"type": "boolean"},
    },
}
READY = {
    "type": "object",
    "required": ["ready", "consumer_alive", "restoring", "unowned"],
    "properties": {
        "ready": {"type": "boolean"},
        "consumer_alive": {"type": "boolean"},
        "lease": {"type": "boolean"},
        "consumer_error": {"type": "string", "nullable": True},
        "writes_failing_since": {"type": "number", "nullable": True},
        "refused_owners": {
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "generation": _NULLABLE_INT,
        "partitions": {"type": "integer"},
        "restoring": {"type": "array", "items": {"type": "string"}},
        "unowned": {"type": "array", "items": {"type": "integer"}},
    },
}


ENTRY_ROWS = {
    "type": "object",
    "properties": {
        "entries": {
            "type": "array",
            "description": "[key, partition, offset, value as JSON text]",
            "items": {"type": "array", "minItems": 4, "maxItems": 4},
        },
        "positions": {
            "type": "object",
            "description": "partition → the last offset the page reflects (-1: none)",
            "additionalProperties": {"type": "integer"},
        },
    },
    "required": ["entries", "positions"],
}
NO_EFFECT = {
    "type": "object",
    "properties": {
        "no_effect": {
            "type": "array",
            "description": "offsets in [from, through) whose records took no effect",
            "items": {"type": "integer"},
        },
        "through": {
            "type": "integer",
            "description": "how far towards `to` this instance has applied",
        },
    },
    "required": ["no_effect", "through"],
}
FORGOTTEN = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "decided_from": {"type": "integer"},
    },
    "required": ["code", "detail", "decided_from"],
}
EVENT_STREAM = {
    "type": "string",
    "description": "Server-Sent Events: `event: put` (data {key, value, version}) and "
    "`event: delete` (data {key, version}), each with `id:` the position vector after "
    "it; `id:` lines alone move the client's Last-Event-ID past records it does not "
    "watch; `: keep-alive` comments while idle; a final `event: error` (data {code: "
    "history_compacted}) when history it needs is compacted meanwhile.",
}
