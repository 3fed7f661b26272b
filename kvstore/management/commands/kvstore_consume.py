"""`manage.py kvstore_consume`: run this instance's consumer-group member (the cache's
only writer)."""

import gc
import os
import signal
import sqlite3
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from kvstore import apply, cache
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
        settings = store_settings()
        # What is loaded by now lives as long as the process: the garbage collector
        # stops scanning it, and its full collections stop pausing the apply loop.
        gc.freeze()
        process = ConsumerProcess(settings, progress=self._progress)
        try:
            process.run(should_stop=lambda: bool(stopping))
        except AlreadyRunning as exc:
            raise CommandError(str(exc)) from exc
        except (StoreUnavailable, TopicMisconfigured) as exc:
            self._record_failure(settings, str(exc))
            raise CommandError(str(exc)) from exc
        except Exception as exc:  # a bug: say so too, then crash with the traceback
            self._record_failure(settings, f"{exc.__class__.__name__}: {exc}")
            raise

    @staticmethod
    def _record_failure(settings, message):
        """Leave the reason in the cache, where the web side shows it."""
        try:
            conn = cache.connect(settings.cache_path)
        except (OSError, sqlite3.Error):
            return  # the log still says why; the error itself matters more
        try:
            apply.record_failure(
                conn, settings.advertised_url, os.getpid(), time.time(), message
            )
        except sqlite3.Error:
            pass
        finally:
            conn.close()

    def _progress(self, message):
        self.stderr.write(message)
        sys.stderr.flush()
