"""`manage.py kvstore_check`: run the consistency checker's workload against a running
deployment (no fault injection), verify every answer against the topic, print the
verdict; exit 1 on a violation."""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from kvstore.checker import analysis, history, report
from kvstore.checker.runner import CheckRun
from kvstore.conf import store_settings
from kvstore.errors import StoreUnavailable


class Command(BaseCommand):
    help = (
        "Drive concurrent clients through the given instances, record every operation, "
        "then check each key's history against the namespace topic (read from Kafka "
        "with this deployment's settings): no acknowledged write lost, no stale read, "
        "no false 404, no double compare-and-set, no phantom write."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            action="append",
            default=[],
            help="base URL of an instance (repeat for each; clients spread over them)",
        )
        parser.add_argument("--seconds", type=float, default=30.0)
        parser.add_argument("--clients", type=int, default=8)
        parser.add_argument("--keys-per-partition", type=int, default=3)
        parser.add_argument("--namespace", default="kv")
        parser.add_argument(
            "--history", help="write the history as JSON lines to this file"
        )
        parser.add_argument(
            "--analyze",
            metavar="FILE",
            help="only analyse a history written earlier with --history",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the verdict as JSON"
        )

    def handle(self, *args, **options):
        if options["analyze"]:
            loaded = history.load(options["analyze"])
            result = report.verdict(loaded, analysis.analyze(loaded))
        else:
            result = self._run(options)
        self.stdout.write(
            json.dumps(result.as_dict(), indent=2)
            if options["json"]
            else report.render(result)
        )
        if not result.ok:
            raise CommandError(
                f"{result.findings.violations} consistency violation(s)", returncode=1
            )

    def _run(self, options):
        if not options["url"]:
            raise CommandError("name at least one instance with --url")
        try:
            run = CheckRun(
                store_settings(),
                [url.rstrip("/") for url in options["url"]],
                namespace=options["namespace"],
                history_path=options["history"],
                keys_per_partition=options["keys_per_partition"],
                clients=options["clients"],
            ).start()
        except (StoreUnavailable, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"checking {run.topic} with {options['clients']} clients for "
            f"{options['seconds']:.0f}s (run {run.run_id})"
        )
        try:
            time.sleep(options["seconds"])
        finally:
            run.stop()
        try:
            return run.verify()
        except StoreUnavailable as exc:
            raise CommandError(str(exc)) from exc
