"""`manage.py kvstore_export`: the latest value of every key, as JSON lines, read from
the topics."""

import sys

from django.core.management.base import BaseCommand, CommandError

from kvstore import bulk
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable


class Command(BaseCommand):
    help = (
        'Write {"namespace", "key", "value"} JSON lines for every live key '
        "(what kvstore_import reads)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--output", "-o", help="file to write (default: standard output)"
        )
        parser.add_argument(
            "--namespace", action="append", help="only this namespace (repeatable)"
        )

    def handle(self, *args, output, namespace, **options):
        settings = store_settings()
        namespaces = namespace or list(settings.namespaces)
        unknown = set(namespaces) - set(settings.namespaces)
        if unknown:
            raise CommandError(f"unknown namespace(s): {', '.join(sorted(unknown))}")
        out = open(output, "w", encoding="utf-8") if output else sys.stdout
        try:
            count, skipped = bulk.export_lines(settings, namespaces, out)
        except StoreUnavailable as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if output:
                out.close()
        self.stderr.write(
            f"exported {count} entries"
            + (f" ({skipped} undecodable records skipped)" if skipped else "")
        )
