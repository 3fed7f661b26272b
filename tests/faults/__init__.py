"""The fault harness of the consistency checker: a 3-node Kafka cluster whose nodes can
be killed, stalled and restarted (`brokers`), store instances (one of them optionally in
its own network namespace behind a bridge that can be cut: `netns`, `proxy`) and the
faults themselves (`scenarios`)."""
