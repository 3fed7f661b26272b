"""`manage.py kvstore_status`: the whole cluster, as `kafka-consumer-groups --describe`
shows a group: the members, partition → owner, each partition's applied/end/lag and
state, and who is restoring; from Kafka's group coordinator and every member's
/api/cluster (or, with --url, from one instance's /api/cluster/status). Exits 1 naming
the partitions that have no ready owner."""

import json

from django.core.management.base import BaseCommand, CommandError

from kvstore import cluster, log, overview
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable


class Command(BaseCommand):
    help = (
        "Show the whole cluster: members, partition owners, each partition's applied "
        "offset, end offset, lag and state, from Kafka (KAFKA_BOOTSTRAP_SERVERS, "
        "KVSTORE_GROUP_ID) and each member's /api/cluster, or from the instance at "
        "--url. Exit 1 when a partition has no ready owner. With KVSTORE_AUTH=required "
        "the instances want an admin key: set KVSTORE_ADMIN_KEY."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", help="an instance's base URL: ask it instead of Kafka"
        )
        parser.add_argument("--json", action="store_true", help="print it as JSON")

    def handle(self, *args, **options):
        settings = store_settings()
        key = settings.admin_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            if options["url"]:
                status = overview.ask(options["url"], headers)
            else:
                status = _from_kafka(settings, headers)
        except StoreUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
        else:
            Table(self.stdout.write).show(status)
            if status["partitions"] and not status["unready"]:
                self.stdout.write("every partition has a ready owner")
        if not status["partitions"]:
            raise CommandError(
                "no partition has an owner: "
                + (status.get("kafka_error") or "the group has no assignment")
            )
        if status["unready"]:
            raise CommandError(
                f"partitions without a ready owner: "
                f"{', '.join(map(str, status['unready']))}"
            )


def _from_kafka(settings, headers):
    try:
        admin = log.open_admin(settings, timeout_ms=cluster.END_OFFSETS_TIMEOUT_MS)
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"{exc} (or ask an instance: --url URL)") from exc
    try:
        return overview.collect(settings, headers, admin)
    finally:
        admin.close()


class Table:
    """The status as text, one `write` per line."""

    def __init__(self, write):
        self.write = write

    def show(self, status):
        source = "Kafka" if status["source"] == "kafka" else "an instance"
        self.write(
            f"group {status['group']}: {status['group_state'] or 'state unknown'}, "
            f"generation {status['generation']} (members and owners from {source})"
        )
        if status.get("kafka_error"):
            self.write(f"not from Kafka: {status['kafka_error']}")
        self.write("")
        self.members(status["members"])
        self.write("")
        self.partitions(status)

    def members(self, members):
        self.write(
            f"{'member':<30} {'consumer':<11} {'lease':<6} {'generation':>10}  "
            f"{'partitions':<20} restoring"
        )
        for member in members:
            if not member["answered"]:
                self.write(f"{member['url']:<30} ({member['reason']})")
                continue
            consumer = "alive" if member["consumer_alive"] else "NOT RUNNING"
            lease = "held" if member["lease"] else "NONE"
            self.write(
                f"{member['url']:<30} {consumer:<11} {lease:<6} "
                f"{_text(member['generation']):>10}  "
                f"{_numbers(member['partitions']):<20} "
                f"{_numbers(member['restoring'])}"
            )
            if member["last_error"]:
                self.write(f"{'':<30} last error: {member['last_error']}")

    def partitions(self, status):
        self.write(
            f"{'partition':>9}  {'owner':<30} {'state':<11} {'namespace':<10} "
            f"{'applied':>9} {'end':>9} {'lag':>7} {'skipped':>7} {'misplaced':>9}"
        )
        for row in status["partitions"]:
            owner = row["owner"] or "-"
            lead = f"{row['partition']:>9}  {owner:<30} {row['state']:<11}"
            for ns in status["namespaces"]:
                self.write(f"{lead} {ns:<10} {_offsets(row['namespaces'][ns])}")
                lead = " " * len(lead)
            if row["reason"]:
                self.write(f"{'':>11}{row['reason']}")


def _offsets(figures):
    applied = _text(figures["applied"])
    if figures["from"] == "committed" and figures["applied"] is not None:
        applied += "*"  # the group's committed offset: the owner said nothing
    return (
        f"{applied:>9} {_text(figures['end']):>9} {_text(figures['lag']):>7} "
        f"{_text(figures['skipped']):>7} {_text(figures['misplaced']):>9}"
    )


def _text(value):
    return "-" if value is None else str(value)


def _numbers(values):
    return ",".join(map(str, values)) or "-"
