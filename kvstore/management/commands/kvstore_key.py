"""`manage.py kvstore_key create --role write [--append FILE]`: a new API key, and the
`role:sha256-hex` line that configures it (the store keeps only that line);
`manage.py kvstore_key secret`: a new cluster secret for KVSTORE_CLUSTER_SECRET."""

import os
import secrets

from django.core.management.base import BaseCommand, CommandError

from kvstore import keys


class Command(BaseCommand):
    help = (
        "create: print a new API key (line 1, give it to the client; it is not kept) "
        "and its line for KVSTORE_API_KEYS_FILE or KVSTORE_API_KEYS (line 2). "
        "secret: print a new cluster secret."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="a new API key")
        create.add_argument("--role", choices=keys.ROLES, required=True)
        create.add_argument(
            "--append", metavar="FILE", help="also append its line to FILE"
        )
        actions.add_parser("secret", help="a new cluster secret")

    def handle(self, *args, action, **options):
        if action == "secret":
            self.stdout.write(secrets.token_urlsafe(32))
            return
        key = keys.new_key()
        line = keys.line(options["role"], key)
        if options["append"]:
            self._append(options["append"], line)
        self.stdout.write(key)
        self.stdout.write(line)

    @staticmethod
    def _append(path, line):
        try:
            # Readable by the owner only: hashes are not keys, but need not be public.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError as exc:
            raise CommandError(f"cannot append to {path}: {exc.strerror}") from None
