"""kvstore_import and kvstore_export against a real broker and a real instance."""

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from kvstore import bulk
from kvstore.conf import from_environ
from tests import rawlog
from tests.brokers import ROOT
from tests.instances import Instance, environment


def write_lines(path, items):
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ("{", "line 2: not JSON"),
        ('{"namespace": "kv", "key": "k"}', 'exactly "namespace", "key" and "value"'),
        ('{"namespace": "nope", "key": "k", "value": 1}', "unknown namespace 'nope'"),
        (
            '{"namespace": "kv", "key": "' + "x" * 300 + '", "value": 1}',
            "longer than 255 bytes",
        ),
        ('{"namespace": "kv", "key": 5, "value": 1}', "the key must be a string"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_written(
    tmp_path, store_settings, line, message
):
    call_command("kvstore_init")
    path = tmp_path / "in.jsonl"
    path.write_text('{"namespace": "kv", "key": "good", "value": 1}\n' + line + "\n")
    with pytest.raises(CommandError, match=message):
        call_command("kvstore_import", str(path))
    assert (
        rawlog.read_all(
            list(store_settings.bootstrap_servers), store_settings.topic("kv")
        )
        == []
    )


def test_import_is_served_and_export_round_trips(tmp_path, store_settings, capsys):
    call_command("kvstore_init")
    items = [
        {"namespace": "kv", "key": f"k{i:04d}", "value": {"n": i}} for i in range(2500)
    ]
    items += [
        {
            "namespace": "users",
            "key": "u1",
            "value": {"name": "Ann", "email": "ann@example.com"},
        },
        {"namespace": "kv", "key": "k0001", "value": "overwritten"},
    ]
    call_command(
        "kvstore_import", str(write_lines(tmp_path / "in.jsonl", items)), batch=1000
    )
    assert "imported 2502 records" in capsys.readouterr().out
    assert (tmp_path / "in.jsonl.progress").read_text() == "2502"

    node = Instance(store_settings, tmp_path / "node").start()
    try:
        assert node.api("GET", "/api/kv/k0001").json() == "overwritten"
        assert node.api("GET", "/api/users/u1").json() == {
            "id": "u1",
            "name": "Ann",
            "email": "ann@example.com",
        }
    finally:
        node.stop()

    call_command("kvstore_export", output=str(tmp_path / "out.jsonl"))
    exported = [
        json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    expected = {(i["namespace"], i["key"]): i["value"] for i in items}
    assert {(e["namespace"], e["key"]): e["value"] for e in exported} == expected
    assert len(exported) == 2501


def test_an_interrupted_import_resumes_and_a_rerun_gives_the_same_state(
    tmp_path, store_settings
):
    call_command("kvstore_init")
    items = [{"namespace": "kv", "key": f"k{i % 300}", "value": i} for i in range(1000)]
    path = write_lines(tmp_path / "in.jsonl", items)
    settings = store_settings
    lines = bulk.parse(path, settings.namespaces)
    # "Interrupted":
    bulk.import_lines(
        settings, lines[:400], batch=100, progress_file=bulk.progress_path(path)
    )
    assert bulk.progress_path(path).read_text() == "400"
    call_command("kvstore_import", str(path), resume=True, batch=100)
    records = rawlog.read_all(list(settings.bootstrap_servers), settings.topic("kv"))
    assert len(records) == 1000, "the resumed import wrote only what was missing"
    # And a full rerun changes no final value.
    call_command("kvstore_import", str(path), batch=100)
    last = {}
    for _, _, key, value in sorted(
        rawlog.read_all(list(settings.bootstrap_servers), settings.topic("kv")),
        key=lambda r: (r[0], r[1]),
    ):
        last[key.decode()] = json.loads(value)
    assert last == {
        f"k{j}": max(i for i in range(1000) if i % 300 == j) for j in range(300)
    }


def test_import_exits_non_zero_without_kafka(tmp_path, store_settings):
    path = write_lines(
        tmp_path / "in.jsonl", [{"namespace": "kv", "key": "k", "value": 1}]
    )
    env = environment(from_environ({}), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    done = subprocess.run(
        [sys.executable, "manage.py", "kvstore_import", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "CommandError" in done.stderr
