"""Import and export of JSON lines: {"namespace": "kv", "key": "k", "value": <any JSON>}
per line.

An import validates the whole file before writing anything, then produces in
acknowledged batches and records how many lines are acknowledged in FILE.progress, so an
interrupted import can resume where it stopped; running it again from the start is safe
too (the last value of each key wins either way).
"""

import dataclasses
import json
import time
from pathlib import Path

from kvstore import log, routing, values
from kvstore.errors import InvalidKey
from kvstore.partitioner import partition_for


class BulkError(Exception):
    """A line of the file cannot be imported; nothing was written."""


@dataclasses.dataclass(frozen=True)
class Line:
    namespace: str
    key: bytes
    value: bytes


def parse(path, namespaces):
    """Every line of `path` as a Line; BulkError naming the first bad line."""
    lines = []
    with open(path, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if text.strip():
                lines.append(_parse_line(text, number, namespaces))
    return lines


def _parse_line(text, number, namespaces):
    try:
        item = values.loads(text)
    except values.ValueRefused as exc:
        raise BulkError(f"line {number}: {exc.detail}") from None
    except ValueError as exc:
        raise BulkError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(item, dict) or set(item) != {"namespace", "key", "value"}:
        raise BulkError(
            f'line {number}: expected an object with exactly "namespace", "key" and '
            '"value"'
        )
    if item["namespace"] not in namespaces:
        raise BulkError(f"line {number}: unknown namespace {item['namespace']!r}")
    if not isinstance(item["key"], str):
        raise BulkError(f"line {number}: the key must be a string")
    try:
        routing.validate_key(item["key"])
    except InvalidKey as exc:
        raise BulkError(f"line {number}: {exc.detail}") from None
    try:
        value = values.encode(item["value"])
    except values.ValueRefused as exc:
        raise BulkError(f"line {number}: {exc.detail}") from None
    return Line(item["namespace"], item["key"].encode(), value)


def progress_path(path):
    return Path(f"{path}.progress")


def import_lines(
    settings,
    lines,
    start=0,
    batch=20_000,
    report=lambda done, total, rate: None,
    progress_file=None,
):
    """Produce `lines[start:]` in acknowledged batches; returns records written per
    second."""
    with log.admin(settings) as admin:
        facts = admin.describe([settings.topic(ns) for ns in settings.namespaces])
    if any(state is None for state in facts.values()):
        raise BulkError(
            "the namespace topics do not exist: run `manage.py kvstore_init`"
        )
    sizes = {ns: facts[settings.topic(ns)].partitions for ns in settings.namespaces}
    producer, began, done = log.BulkProducer(settings), time.monotonic(), start
    try:
        for first in range(start, len(lines), batch):
            for line in lines[first : first + batch]:
                partition = partition_for(line.key.decode(), sizes[line.namespace])
                producer.send(
                    settings.topic(line.namespace), partition, line.key, line.value
                )
            producer.flush()
            done = min(first + batch, len(lines))
            if progress_file is not None:
                progress_file.write_text(str(done))
            report(
                done, len(lines), (done - start) / max(time.monotonic() - began, 1e-9)
            )
    finally:
        producer.close()
    return (done - start) / max(time.monotonic() - began, 1e-9)


def export_lines(settings, namespaces, out):
    """Write the latest value of every key of `namespaces` as JSON lines, in key order.

    Returns (lines written, records skipped because they cannot be decoded, as the
    consumer skips them).
    """
    count = skipped = 0
    for namespace in namespaces:
        latest = log.read_latest(settings, settings.topic(namespace))
        for key in sorted(latest):
            try:
                text_key, text_value = key.decode(), latest[key].decode()
            except UnicodeDecodeError:
                skipped += 1
                continue
            if not values.is_json(text_value):
                skipped += 1
                continue
            head = {"namespace": namespace, "key": text_key}
            out.write(json.dumps(head, separators=(",", ":"))[:-1])
            out.write(f',"value":{text_value}}}\n')
            count += 1
    return count, skipped
