"""The cluster-wide status's pure core (`overview.assemble`): how each partition's
state, owner and offsets follow from the membership and what each member says of
itself. The same against real instances is in tests/test_status.py."""

from kvstore import overview

A, B = "http://127.0.0.1:8000", "http://127.0.0.1:8001"
NAMESPACES = ("kv",)


def report(url, rows, alive=True, lease=True, generation=7):
    return {
        "instance": url,
        "consumer": {"alive": alive, "lease": lease, "last_error": None},
        "generation": generation,
        "local": [
            {
                "namespace": "kv",
                "partition": p,
                "state": state,
                "applied_offset": applied,
                "end_offset": applied,
                "lag": 0,
                "restore_remaining": 0 if state == "ready" else 5,
                "skipped": 0,
                "misplaced": 0,
            }
            for p, state, applied in rows
        ],
    }


def membership(owners, **fields):
    members = tuple(sorted(set(owners.values()) - {None}))
    return overview.Membership("kafka", "Stable", members, owners, **fields)


def test_every_partition_ready_when_every_owner_serves_it():
    found = {A: report(A, [(0, "ready", 3)]), B: report(B, [(1, "ready", 4)])}
    status = overview.assemble(
        membership({0: A, 1: B}, ends={("kv", 0): 5, ("kv", 1): 4}), found, NAMESPACES
    )
    assert status["unready"] == [] and status["generation"] == 7
    zero = status["partitions"][0]
    assert (zero["owner"], zero["state"], zero["reason"]) == (A, "ready", None)
    # Kafka's end offset, asked now, against the owner's applied offset.
    assert zero["namespaces"]["kv"] == {
        "applied": 3,
        "end": 5,
        "lag": 2,
        "from": "owner",
        "state": "ready",
        "restore_remaining": 0,
        "skipped": 0,
        "misplaced": 0,
    }
    assert [m["partitions"] for m in status["members"]] == [[0], [1]]


def test_each_way_a_partition_can_lack_a_ready_owner():
    found = {
        A: report(A, [(1, "restoring", 2)]),
        B: "unreachable: ConnectionError",
    }
    owners = {0: None, 1: A, 2: A, 3: B}
    status = overview.assemble(
        membership(owners, committed={("kv", 3): 9}, ends={("kv", 3): 12}),
        found,
        NAMESPACES,
    )
    states = [row["state"] for row in status["partitions"]]
    assert states == ["unowned", "restoring", "moving", "unreachable"]
    assert status["unready"] == [0, 1, 2, 3]
    lost = status["partitions"][3]
    assert "unreachable: ConnectionError" in lost["reason"]
    # The owner said nothing: the group's committed offset stands in.
    assert lost["namespaces"]["kv"]["applied"] == 9
    assert lost["namespaces"]["kv"]["from"] == "committed"
    assert lost["namespaces"]["kv"]["lag"] == 3
    member_a = next(m for m in status["members"] if m["url"] == A)
    assert member_a["restoring"] == [1] and member_a["partitions"] == [1, 2]
    member_b = next(m for m in status["members"] if m["url"] == B)
    assert not member_b["answered"] and member_b["reason"].startswith("unreachable")


def test_an_owner_without_its_lease_does_not_serve():
    found = {A: report(A, [(0, "ready", 1)], lease=False)}
    status = overview.assemble(membership({0: A}), found, NAMESPACES)
    assert status["partitions"][0]["state"] == "not_serving"
    assert status["unready"] == [0]


def test_without_kafka_the_instance_says_who_holds_what():
    described = {"owners": {"0": A, "1": None}, "members": [A]}
    held = overview.from_instance(described)
    assert held.source == "instance" and held.owners == {0: A, 1: None}
