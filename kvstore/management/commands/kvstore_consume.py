"""`manage.py kvstore_consume`: run this instance's consumer-group member (the cache's
only writer)."""

import signal
import sys

from django.core.management.base import BaseCommand, CommandError

from kvstore.conf import store_settings
from kvstore.consumer import AlreadyRunning, ConsumerProcess
from kvstore.errors import StoreUnavailable, TopicMisconfigured


class Command(BaseCommand):
    help = (
        "Join the consumer group, restore the partitions this instance is given into "
        "its SQLite cache, "
        "and keep applying new records. SIGTERM or Ctrl-C leaves the group at once and "
        "exits 0."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        process = ConsumerProcess(store_settings(), progress=self._progress)
        try:
            process.run(should_stop=lambda: bool(stopping))
        except (AlreadyRunning, StoreUnavailable, TopicMisconfigured) as exc:
            raise CommandError(str(exc)) from exc

    def _progress(self, message):
        self.stderr.write(message)
        sys.stderr.flush()
