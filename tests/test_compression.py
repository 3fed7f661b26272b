"""Every codec: batches a foreign producer compressed with gzip, snappy, lz4 or zstd are
served, and KVSTORE_COMPRESSION makes the store's own producers compress."""

import dataclasses
import json

import pytest
from django.core.management import call_command

from kvstore import log, topics
from kvstore.conf import from_environ
from kvstore.log.common import producer_config
from tests import rawlog
from tests.instances import Instance, isolated_settings, wait_for

CODECS = ("gzip", "snappy", "lz4", "zstd")
# A value that compresses well, so a compressed batch is visibly smaller on disk.
TEXT = "kafka-native key-value store " * 60


@pytest.fixture(scope="module")
def node(kafka_bootstrap, tmp_path_factory):
    """One instance without KVSTORE_COMPRESSION, on its own topics."""
    settings = isolated_settings(kafka_bootstrap)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    started = Instance(settings, tmp_path_factory.mktemp("codecs")).start()
    yield started
    started.stop()


def bytes_on_disk(settings, namespace="kv"):
    return rawlog.log_size(list(settings.bootstrap_servers), settings.topic(namespace))


def test_kafka_python_has_every_codec():
    assert rawlog.codecs() == {codec: True for codec in CODECS}


@pytest.mark.parametrize("codec", (None,) + CODECS)
def test_batches_a_foreign_producer_compressed_are_served(node, codec):
    settings = node.settings
    name = codec or "none"
    records = [
        (f"{name}-{i}", json.dumps({"codec": name, "i": i, "text": TEXT}))
        for i in range(200)
    ]
    raw = sum(len(key) + len(value) for key, value in records)
    before = bytes_on_disk(settings)
    rawlog.produce(
        list(settings.bootstrap_servers),
        settings.topic("kv"),
        records,
        compression=codec,
    )
    grown = bytes_on_disk(settings) - before
    if codec is None:
        assert grown > raw, "the control: uncompressed records take their full size"
    else:
        assert grown < raw / 4, f"{codec} batches are stored compressed ({grown} B)"
    wait_for(
        lambda: node.api("GET", f"/api/kv/{name}-199").status_code == 200,
        30,
        f"the {name} records to be served",
        node.consumer_log,
    )
    for key, value in records[::20]:
        got = node.api("GET", f"/api/kv/{key}")
        assert got.status_code == 200 and got.json() == json.loads(value)
    listed = node.api("GET", f"/api/kv/?after={name}-&limit=1000").json()["results"]
    assert len([r for r in listed if r["key"].startswith(f"{name}-")]) == 200


def test_producer_config_sets_the_codec_only_when_asked():
    assert "compression_type" not in producer_config(from_environ({}))
    chosen = from_environ({"KVSTORE_COMPRESSION": "zstd"})
    assert producer_config(chosen)["compression_type"] == "zstd"


def test_kvstore_compression_compresses_the_stores_own_writes(
    kafka_bootstrap, tmp_path, settings, capsys
):
    settings.KVSTORE = isolated_settings(kafka_bootstrap, compression="lz4")
    call_command("kvstore_init")
    value = {"text": TEXT * 10}
    raw = len(json.dumps(value))
    node = Instance(settings.KVSTORE, tmp_path / "node").start()
    try:
        before = bytes_on_disk(settings.KVSTORE)
        put = node.api("PUT", "/api/kv/big", json=value)
        assert put.status_code == 201, put.text
        assert bytes_on_disk(settings.KVSTORE) - before < raw / 4, "one record, lz4"
        assert node.api("GET", "/api/kv/big").json() == value
    finally:
        node.stop()

    lines = [{"namespace": "kv", "key": f"b{i}", "value": value} for i in range(100)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = bytes_on_disk(settings.KVSTORE)
    call_command("kvstore_import", str(source))
    assert "imported 100 records" in capsys.readouterr().out
    assert bytes_on_disk(settings.KVSTORE) - before < 100 * raw / 4, "imported, lz4"
    settings.KVSTORE = dataclasses.replace(settings.KVSTORE, compression="none")
    before = bytes_on_disk(settings.KVSTORE)
    call_command("kvstore_import", str(source))
    assert bytes_on_disk(settings.KVSTORE) - before > 100 * raw, "the control: none"
