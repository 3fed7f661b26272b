"""Ownership: which member holds which partition index, planned by the group leader.

Pure logic behind the assignor in `kvstore.log.assignor`. Partitions are co-partitioned:
index p of every namespace topic goes to the same member. The plan is sticky (members
keep what they hold up to a balanced share) and cooperative (an index that changes hands
is first taken from its holder and given to nobody; the follow-up rebalance hands it to
its new owner). The leader sends every member the whole index → owner URL map, so any
instance can route any key.
"""

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class GroupView:
    """What a member learns from one assignment: the generation and who owns each
    partition index."""

    generation: int
    owners: tuple  # owners[p] = base URL, or None while p is moving or unassigned
    members: tuple  # the base URLs of all members

    def owner(self, partition):
        return self.owners[partition] if 0 <= partition < len(self.owners) else None


def plan(partitions, members):
    """Plan one rebalance round.

    `members`: {member_id: (url, owned partition indices[, generation])}, where
    `generation` is the one in which the member last held what it claims (-1 when
    unknown). Returns ({member_id: indices assigned this round}, owners list for this
    round).
    """
    holders, contested = _holders(members)
    held = {m: {p for p, h in holders.items() if h == m} for m in members}
    order = sorted(members, key=lambda m: (-len(held[m]), m))
    base, extra = divmod(partitions, len(order)) if order else (0, 0)
    desired, taken = {m: [] for m in order}, set()
    for member in order:  # keep what is held, up to a balanced share
        cap = base + 1 if extra > 0 else base
        kept = sorted(p for p in held[member] if p < partitions and p not in taken)
        kept = kept[:cap]
        if len(kept) == base + 1:
            extra -= 1
        desired[member] = kept
        taken.update(kept)
    # The rest to the least loaded.
    for p in (p for p in range(partitions) if p not in taken):
        member = min(order, key=lambda m: (len(desired[m]), m))
        desired[member].append(p)
    # Cooperative: an index goes to its new owner only in a round in which nobody
    # else holds it; a contested one goes to nobody until its claimants let it go.
    this_round = {
        member: {
            p
            for p in desired[member]
            if holders.get(p, member) == member and p not in contested
        }
        for member in order
    }
    owners = [None] * partitions
    for member, indices in this_round.items():
        for p in indices:
            owners[p] = members[member][0]
    return this_round, owners


def _holders(members):
    """({index: the member that holds it}, contested indices). A member that fell out
    of the group (a pause, a lost session) rejoins still claiming what it held, so the
    claim of the highest generation wins, as in Kafka's own cooperative assignor; two
    claims at that generation make the index contested."""
    claims = {}
    for member, (_, owned, *generation) in members.items():
        for p in owned:
            claims.setdefault(p, []).append(
                (generation[0] if generation else -1, member)
            )
    holders, contested = {}, set()
    for p, by in claims.items():
        top = max(generation for generation, _ in by)
        at_top = [member for generation, member in by if generation == top]
        if len(at_top) == 1:
            holders[p] = at_top[0]
        else:
            contested.add(p)
    return holders, contested


def encode_subscription(url):
    return json.dumps({"url": url}).encode()


def decode_subscription(data):
    """The URL a member advertised, or None for a member that is not kvstore."""
    try:
        url = json.loads(data.decode())["url"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def encode_assignment(owners, members):
    return json.dumps(
        {"owners": list(owners), "members": sorted(set(members))}
    ).encode()


def decode_assignment(data, generation):
    try:
        decoded = json.loads(data.decode())
        return GroupView(
            generation, tuple(decoded["owners"]), tuple(decoded["members"])
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
