"""`manage.py migrate`: the store keeps nothing in Django's database; this creates or
upgrades the schema of this instance's SQLite read cache (the consumer process also does
so when it starts).
"""

from django.core.management.base import BaseCommand
from django.db.migrations.autodetector import MigrationAutodetector

from kvstore import cache
from kvstore.conf import store_settings


class Command(BaseCommand):
    help = (
        "Create or upgrade the schema of the read cache at KVSTORE_CACHE_PATH "
        "(kvstore has no ORM tables)."
    )
    requires_system_checks = []
    # Django's check wants migrate and makemigrations to agree.
    autodetector = MigrationAutodetector

    def add_arguments(self, parser):
        parser.add_argument(
            "args", nargs="*", help="ignored (Django's app_label/migration_name)"
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_true",
            help="accepted for compatibility",
        )

    def handle(self, *args, **options):
        path = store_settings().cache_path
        cache.connect(path).close()
        self.stdout.write(
            self.style.SUCCESS(
                f"read cache schema v{cache.SCHEMA_VERSION} ready at {path}"
            )
        )
