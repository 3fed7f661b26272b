"""`manage.py kvstore_init`: create or verify the namespace topics."""

from django.core.management.base import BaseCommand, CommandError

from kvstore import log, topics
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable, TopicMisconfigured


class Command(BaseCommand):
    help = (
        "Create the namespace topics (compacted, co-partitioned) if they are missing, "
        "and verify the ones "
        "that exist. Idempotent. Fails on a topic that is not compacted or has the "
        "wrong partition count."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="seconds to wait for Kafka (default 10)",
        )

    def handle(self, *args, timeout, **options):
        settings = store_settings()
        try:
            with log.admin(settings, timeout_ms=int(timeout * 1000)) as admin:
                topics.ensure(admin, settings, report=self.stdout.write)
        except (TopicMisconfigured, StoreUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS("namespace topics ready"))
