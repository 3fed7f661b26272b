"""The group's assignor: cooperative-sticky on the wire, co-partitioned, and carrying
the ownership map.

Each member advertises its base URL in its subscription user data, and the generation in
which it held what it claims (subscription v2, which kafka-python does not fill itself:
without it a member that fell out of the group and rejoins still claims its old
partitions on a par with their new holder); the leader plans with
`kvstore.ownership.plan` and puts the whole partition → URL map in every member's
assignment user data, as Kafka Streams does. `view` holds the latest GroupView;
kafka-python calls `on_assignment` on its IO thread, so it only stores it.
"""

from collections import defaultdict

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

from kvstore import ownership


SUBSCRIPTION_VERSION = 2  # carries generation_id


class CoPartitionedAssignor(CooperativeStickyAssignor):
    name = "kvstore-copartitioned"

    def __init__(self, url):
        super().__init__()
        self.url = url
        self.view = None

    def metadata(self, topics):
        subscription = super().metadata(topics)
        generation = self.generation if self.member_assignment else -1
        return ConsumerProtocolSubscription(
            version=SUBSCRIPTION_VERSION,
            topics=subscription.topics,
            user_data=ownership.encode_subscription(self.url),
            owned_partitions=subscription.owned_partitions,
            generation_id=-1 if generation is None else generation,
        )

    def forget(self):
        """Claim nothing at the next join: what was held is lost (the session ended)."""
        self.member_assignment = None

    def assign(self, cluster, members):
        topics = sorted({t for m in members for t in m.metadata.topics})
        sizes = {t: len(cluster.partitions_for_topic(t) or ()) for t in topics}
        # Co-partitioned topics all have this many.
        partitions = min(sizes.values(), default=0)
        described = {}
        for member in members:
            owned = {
                p
                for tp in (member.metadata.owned_partitions or ())
                for p in tp.partitions
            }
            described[member.member_id] = (
                ownership.decode_subscription(member.metadata.user_data),
                owned,
                getattr(member.metadata, "generation_id", -1),
            )
        this_round, owners = ownership.plan(partitions, described)
        user_data = ownership.encode_assignment(
            owners, [url for url, *_ in described.values() if url]
        )
        assignment = {}
        for member_id, indices in this_round.items():
            by_topic = defaultdict(list)
            for topic in topics:
                by_topic[topic] = sorted(p for p in indices if p < sizes[topic])
            assignment[member_id] = ConsumerProtocolAssignment(
                self.version, sorted(by_topic.items()), user_data
            )
        return assignment

    def on_assignment(self, assignment, generation):
        super().on_assignment(assignment, generation)
        view = ownership.decode_assignment(assignment.user_data, generation)
        if view is not None:
            self.view = view
