"""`manage.py kvstore_import FILE`: write JSON lines into the store, in acknowledged
batches."""

import sys

from django.core.management.base import BaseCommand, CommandError

from kvstore import bulk
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable


class Command(BaseCommand):
    help = (
        'Import a file of JSON lines {"namespace": ..., "key": ..., "value": ...}. The '
        "whole file is checked "
        "first (nothing is written if a line is bad); progress is kept in "
        "FILE.progress so --resume continues "
        "an interrupted import. Running it again from the start gives the same final "
        "state."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--resume",
            action="store_true",
            help="skip the lines FILE.progress says are written",
        )
        parser.add_argument(
            "--batch", type=int, default=20_000, help="records per acknowledged batch"
        )

    def handle(self, *args, file, resume, batch, **options):
        settings = store_settings()
        try:
            lines = bulk.parse(file, settings.namespaces)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        except bulk.BulkError as exc:
            raise CommandError(f"{file}: {exc}; nothing was written") from exc
        progress = bulk.progress_path(file)
        start = int(progress.read_text() or 0) if resume and progress.exists() else 0
        if start:
            self.stderr.write(f"resuming after line {start} of {len(lines)}")
        try:
            rate = bulk.import_lines(
                settings, lines, start, batch, self._report, progress
            )
        except (StoreUnavailable, bulk.BulkError) as exc:
            raise CommandError(
                f"{exc}; records up to the count in {progress} are written, run again "
                "with --resume"
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {len(lines) - start} records ({rate:,.0f} records/s)"
            )
        )

    def _report(self, done, total, rate):
        self.stderr.write(f"{done}/{total} records written ({rate:,.0f}/s)")
        sys.stderr.flush()
