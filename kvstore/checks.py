"""System checks: configuration mistakes are reported at start, with stable ids and
hints.

The checks tagged `kafka` ask the broker, so they run only on demand (`check --deploy
--tag kafka`) and when the consumer starts, not on every management command.
"""

from django.core.checks import Error, Tags, Warning, register

from kvstore import idempotency, log, routing, topics
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable, TopicMisconfigured

KAFKA = "kafka"


@register(Tags.compatibility)
def check_cache_path(app_configs=None, **kwargs):
    directory = store_settings().cache_path.parent
    if directory.exists() and not directory.is_dir():
        return [
            Error(
                f"{directory} is not a directory",
                hint="Set KVSTORE_CACHE_PATH to a file in a writable directory.",
                id="kvstore.E001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_advertised_url(app_configs=None, **kwargs):
    settings = store_settings()
    if not routing.peer_allowed(settings, settings.advertised_url):
        return [
            Warning(
                f"KVSTORE_ADVERTISED_URL {settings.advertised_url} is not on this "
                "instance's peer allow-list, so peers configured alike will not "
                "redirect to it",
                hint="Add it to KVSTORE_PEER_ALLOWLIST (every instance's base URL "
                "belongs there).",
                id="kvstore.W002",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_auth(app_configs=None, **kwargs):
    settings = store_settings()
    if not settings.auth_required:
        return [
            Warning(
                "KVSTORE_AUTH=off: anyone who can reach this instance can read and "
                "write every key",
                hint="Set KVSTORE_AUTH=required, with API keys and a cluster secret "
                "(`manage.py kvstore_key`).",
                id="kvstore.W003",
            )
        ]
    if not settings.api_keys:
        return [
            Error(
                "KVSTORE_AUTH=required but no API key is configured: every request "
                "would be refused",
                hint="Create keys with `manage.py kvstore_key create --role ...` and "
                "set KVSTORE_API_KEYS or KVSTORE_API_KEYS_FILE.",
                id="kvstore.E004",
            )
        ]
    return []


@register(KAFKA, deploy=True)
def check_topics(app_configs=None, **kwargs):
    settings = store_settings()
    names = list(settings.topics().values())
    try:
        with log.admin(settings, timeout_ms=5000) as admin:
            existing = admin.describe(names)
    except StoreUnavailable as exc:
        return [
            Error(
                str(exc),
                hint="Start Kafka (bin/kafka-local start) or fix "
                "KAFKA_BOOTSTRAP_SERVERS, or the TLS/SASL setting the message names.",
                id="kvstore.E002",
            )
        ]
    try:
        plan = topics.plan(settings, existing)
    except TopicMisconfigured as exc:
        return [
            Error(
                str(exc),
                hint="Namespace topics must be compacted and co-partitioned; see "
                "`manage.py kvstore_init`.",
                id="kvstore.E003",
            )
        ]
    lagging = [
        name
        for name, state in existing.items()
        if state is not None
        and int(state.configs.get("min.compaction.lag.ms") or 0)
        < topics.MIN_COMPACTION_LAG_MS // 60
    ]
    if lagging:
        return [
            Warning(
                f"topics {', '.join(sorted(lagging))} have min.compaction.lag.ms under "
                "a minute: a conditional write the log rejected could be compacted "
                "into a key's last record before its owner re-asserts the key",
                hint="kafka-configs --alter --add-config min.compaction.lag.ms=3600000 "
                "(kvstore_init sets it on the topics it creates).",
                id="kvstore.W004",
            )
        ]
    short = _idempotency_outlasts_the_lag(settings, existing)
    if short:
        return short
    if plan.create:
        return [
            Warning(
                f"missing namespace topics: {', '.join(plan.create)}",
                hint="Run `python manage.py kvstore_init`.",
                id="kvstore.W001",
            )
        ]
    return []


def _idempotency_outlasts_the_lag(settings, existing):
    """kvstore.W005 when an Idempotency-Key is remembered longer than half the topics'
    compaction lag: an instance restoring from scratch may then miss a first record."""
    lags = [
        int(state.configs.get("min.compaction.lag.ms") or 0)
        for state in existing.values()
        if state is not None
    ]
    lag_ms = min(lags, default=0)
    if not idempotency.outlasts(settings.idempotency_window, lag_ms):
        return []
    return [
        Warning(
            f"KVSTORE_IDEMPOTENCY_WINDOW ({settings.idempotency_window:g}s) is longer "
            f"than half the topics' min.compaction.lag.ms ({lag_ms} ms): a retry late "
            "in the window may write again on an instance that restored the partition "
            "after compaction removed its first record",
            hint="Shorten KVSTORE_IDEMPOTENCY_WINDOW, or raise min.compaction.lag.ms "
            "to at least twice it (docs/WATCH.md).",
            id="kvstore.W005",
        )
    ]
