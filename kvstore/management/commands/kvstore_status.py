"""`manage.py kvstore_status`: this instance's view of the cluster, as a table."""

from django.core.management.base import BaseCommand

from kvstore import cache, cluster
from kvstore.conf import store_settings


class Command(BaseCommand):
    help = (
        "Show the members, generation, partition owners, and this instance's "
        "partitions with their lag."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        settings = store_settings()
        described = cluster.describe(cache.Reader(settings.cache_path), settings)
        consumer = "alive" if described["consumer"]["alive"] else "NOT RUNNING"
        self.stdout.write(f"instance   {described['instance']} (consumer {consumer})")
        self.stdout.write(f"generation {described['generation']}")
        self.stdout.write(f"members    {', '.join(described['members']) or '-'}")
        self.stdout.write("")
        self.stdout.write(f"{'partition':>9}  owner")
        for partition, owner in described["owners"].items():
            self.stdout.write(f"{partition:>9}  {owner or '(moving)'}")
        self.stdout.write("")
        header = (
            f"{'namespace':<10} {'partition':>9} {'state':<10} {'applied':>10} "
            f"{'end':>10} {'lag':>8}"
        )
        self.stdout.write(header)
        for row in described["local"]:
            end = "-" if row["end_offset"] is None else row["end_offset"]
            lag = "-" if row["lag"] is None else row["lag"]
            self.stdout.write(
                f"{row['namespace']:<10} {row['partition']:>9} {row['state']:<10} "
                f"{row['applied_offset']:>10} {end:>10} {lag:>8}"
            )
