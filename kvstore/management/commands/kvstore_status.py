"""`manage.py kvstore_status`: this instance's view of the cluster, as a table."""

import contextlib

from django.core.management.base import BaseCommand

from kvstore import cache, cluster, log
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable


class Command(BaseCommand):
    help = (
        "Show the members, generation, partition owners, and this instance's "
        "partitions with their lag (from Kafka's end offsets now) and the records "
        "passed over."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        settings = store_settings()
        with _admin(settings) as admin:
            described = cluster.describe(
                cache.Reader(settings.cache_path), settings, admin
            )
        self._consumer(described)
        self.stdout.write("")
        self.stdout.write(f"{'partition':>9}  owner")
        refused = described["refused_owners"]
        for partition, owner in described["owners"].items():
            note = (
                "  (NOT ON KVSTORE_PEER_ALLOWLIST: 503)" if partition in refused else ""
            )
            self.stdout.write(f"{partition:>9}  {owner or '(moving)'}{note}")
        self.stdout.write("")
        self._partitions(described)

    def _consumer(self, described):
        consumer = "alive" if described["consumer"]["alive"] else "NOT RUNNING"
        self.stdout.write(f"instance   {described['instance']} (consumer {consumer})")
        if described["consumer"]["last_error"]:
            self.stdout.write(f"last error {described['consumer']['last_error']}")
        self.stdout.write(f"generation {described['generation']}")
        self.stdout.write(f"members    {', '.join(described['members']) or '-'}")

    def _partitions(self, described):
        source = described["end_offsets_from"]
        self.stdout.write(
            f"{'namespace':<10} {'partition':>9} {'state':<10} {'applied':>10} "
            f"{'end':>10} {'lag':>8} {'skipped':>8} {'misplaced':>9}"
        )
        for row in described["local"]:
            end = "-" if row["end_offset"] is None else row["end_offset"]
            lag = "-" if row["lag"] is None else row["lag"]
            self.stdout.write(
                f"{row['namespace']:<10} {row['partition']:>9} {row['state']:<10} "
                f"{row['applied_offset']:>10} {end:>10} {lag:>8} {row['skipped']:>8} "
                f"{row['misplaced']:>9}"
            )
        if source != "kafka":
            self.stdout.write(
                "(Kafka did not answer: end offsets as the consumer last saw them)"
            )


@contextlib.contextmanager
def _admin(settings):
    """An Admin for fresh end offsets, or None when Kafka cannot be reached."""
    try:
        admin = log.open_admin(settings, timeout_ms=cluster.END_OFFSETS_TIMEOUT_MS)
    except StoreUnavailable:
        yield None
        return
    try:
        yield admin
    finally:
        admin.close()
