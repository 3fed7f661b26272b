"""The Kafka Streams peer (bench/peers/streams-kv) as a process the benchmark drives:
start, readiness, stop, and the checks that its answers and the store's agree.

bench/run builds its jar; a peer instance is `java -jar` with its own port and state
directory, the store's kv topic as its table's source, one application id per cluster.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import requests
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.brokers import ROOT, free_port
from tests.instances import wait_for

JAR = ROOT / "bench" / "peers" / "streams-kv" / "target" / "streams-kv.jar"
# The broker's heap (bin/kafka-local); RocksDB lives outside it, and RSS counts both.
HEAP = os.environ.get("STREAMS_PEER_HEAP", "256m")


class StreamsPeer:
    """One instance of the Kafka Streams service; its state directory outlives a stop,
    so the next start is a warm restart."""

    def __init__(self, bootstrap, topic, application_id, directory):
        if not JAR.exists():
            raise RuntimeError(f"{JAR} is missing: bench/run builds it")
        self.cluster = (bootstrap, topic, application_id)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = self.directory / "peer.log"
        self.command = [
            "java",
            f"-Xmx{HEAP}",
            "-XX:+ExitOnOutOfMemoryError",
            "-jar",
            str(JAR),
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--port",
            str(self.port),
            "--state-dir",
            str(self.directory / "state"),
            "--application-id",
            application_id,
        ]
        self.process = None

    def sibling(self, directory):
        """Another instance of the same service (same topic and application id)."""
        return StreamsPeer(*self.cluster, directory)

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def ready(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"the peer exited:\n{self.log.read_text()[-3000:]}")
        try:
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout, interval=0.02):
        wait_for(self.ready, timeout, f"{self.url}/readyz", self.log, interval)

    def stop(self):
        """SIGTERM (a clean close that writes the checkpoints) and wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def commit_at_end(bootstrap, topic, group):
    """Commit `group`'s offsets at the end of `topic`. A Streams instance with an empty
    state directory in a group whose offsets are committed restores its table from the
    topic (its changelog) before it reports RUNNING, as a new instance of a deployed
    service does; in a group with no offsets it would report RUNNING at once and read
    the topic afterwards, so readiness would not mean the data is there."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)
        ]
        ends = consumer.end_offsets(partitions)
        consumer.commit(
            {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()}
        )
    finally:
        consumer.close()


def redirect_target(url):
    """Where `url` points: None for a 200, the Location of a 307."""
    answer = requests.get(url, timeout=10, allow_redirects=False)
    if answer.status_code == 200:
        return None
    if answer.status_code == 307:
        return answer.headers["Location"]
    raise AssertionError(f"GET {url}: {answer.status_code} {answer.text[:200]}")


def keys_owned(owner, other, candidates, count):
    """Keys that `owner` answers itself and `other` sends to it with a 307."""
    keys = []
    for key in candidates:
        path = f"/api/kv/{key}"
        if redirect_target(owner.url + path) is None and redirect_target(
            other.url + path
        ) == (owner.url + path):
            keys.append(key)
            if len(keys) == count:
                return keys
    raise AssertionError(f"fewer than {count} keys owned by {owner.url}")


def settled(peers, keys):
    """Every instance ready, and each key answered by exactly one of them, the others
    sending it there."""
    if not all(peer.ready() for peer in peers):
        return False
    try:
        for key in keys:
            answers = {
                peer.url: redirect_target(f"{peer.url}/api/kv/{key}") for peer in peers
            }
            owners = [url for url, location in answers.items() if location is None]
            if len(owners) != 1:
                return False
            wanted = f"{owners[0]}/api/kv/{key}"
            if any(loc not in (None, wanted) for loc in answers.values()):
                return False
    except (AssertionError, requests.RequestException):  # a 503 while partitions move
        return False
    return True


def check_agreement(store_url, peer_url):
    """Both serve the same topic: a PUT through either is read back through the other,
    and a PUT's answer means the writer itself reads it (read-your-writes)."""
    for writer, reader, name in (
        (store_url, peer_url, "store"),
        (peer_url, store_url, "peer"),
    ):
        for i in range(5):
            key, value = f"agree-{name}-{i}", {"written_by": name, "i": i}
            answer = _retried("PUT", f"{writer}/api/kv/{key}", json=value)
            assert answer.status_code in (200, 201), (writer, answer.text)
            mine = _retried("GET", f"{writer}/api/kv/{key}")
            assert mine.status_code == 200 and mine.json() == value, (writer, mine.text)
            wait_for(
                lambda: _reads(f"{reader}/api/kv/{key}", value),
                30,
                f"{reader} to read {key} written through {writer}",
            )


def _retried(method, url, attempts=30, **kwargs):
    """The answer to a request, asked again while it is a 503 (the store's and the
    peer's "not now, nothing done": a lapsed lease, a partition moving)."""
    for _ in range(attempts):
        answer = requests.request(method, url, timeout=30, **kwargs)
        if answer.status_code != 503:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    return answer


def _reads(url, value):
    answer = _retried("GET", url)
    return answer.status_code == 200 and answer.json() == value
