"""What the frame allows: the store's GET and PUT beside the same gunicorn serving
apps that do almost nothing (bench/ceiling_app.py), and beside the Kafka Streams
service, all in one run on one broker.

    .venv/bin/python bench/ceiling.py [--seconds 8] [--rounds 2]

(after bench/run has once set up wrk and built the peer's jar).

`hello` is gunicorn (3 workers x 4 threads, the store's settings) answering a fixed
200: no WSGI app can answer GETs faster under it. `produce` adds one acks=all write
per request through a kafka-python producer per worker: the most PUTs a store with
"one producer per web process" could acknowledge, before any cache, routing or
read-your-writes wait. `relay` sends the same writes through one producer for all
the workers, in a process of its own (bench/ceiling_relay.py): what "one producer per
instance" would allow, the hand-off over a Unix socket included. Each service is
warmed up first (GET 3 s, PUT 20 s: the broker's JIT), then the rounds alternate the
order of services. Prints, per figure, the median rate, p50 and p99 and the CPU per
request of the web processes and of the broker (from /proc); "service" counts the
store's consumer process too, and the relay's process.
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from bench.quick import BROKER, RECORDS, cpu_per_request, start  # noqa: E402
from bench.store_bench import wrk  # noqa: E402
from bench.streams_peer import StreamsPeer, check_agreement  # noqa: E402

from kvstore import log  # noqa: E402
from tests.brokers import LocalKafka, free_port  # noqa: E402
from tests.instances import GUNICORN, pgrep, wait_for  # noqa: E402

GET, PUT = ["getkv", str(RECORDS)], ["putkv"]
RELAY = "relay.sock"


def main():
    args = arguments(__doc__)
    with store_and_peer(args, "ceiling-streams") as (kafka, tmp, node, peer, services):
        broker = pgrep("-f", BROKER)
        services_pids = {
            "store": [node.consumer.pid] + pgrep("-P", str(node.web.pid)),
            "streams": [peer.pid],
        }
        urls = {"store": node.url, "streams": peer.url}
        with log.admin(node.settings) as admin:  # its own topic, like the store's
            admin.create("ceiling", node.settings.partitions, 1, {})
        relay = start_relay(kafka.bootstrap, node.settings.partitions, tmp)
        services.append(relay.terminate)
        for app in ("hello_asgi", "hello", "produce", "relay"):
            web, urls[app] = serve(
                app, kafka.bootstrap, node.settings.partitions, relay=tmp / RELAY
            )
            services.append(web.terminate)
            services_pids[app] = pgrep("-P", str(web.pid))
        services_pids["relay"].append(relay.pid)
        measure(urls, services_pids, broker, args, {"relay": [relay.pid]})


@contextlib.contextmanager
def store_and_peer(args, peer_name):
    """A broker, one store instance holding RECORDS records and the Kafka Streams
    service over its topic, which agree: (kafka, tmp, node, peer, services). At the
    end it calls every stop in `services` (which the caller may add to), then stops
    the peer, the instance and the broker."""
    with LocalKafka(nodes=1) as kafka, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        node = start(kafka.bootstrap, tmp, args)
        services = []
        try:
            kv = node.settings.topic("kv")
            peer = StreamsPeer(kafka.bootstrap, kv, peer_name, tmp / "peer")
            services.append(peer.stop)
            peer.start().wait_ready(300)
            last = f"{peer.url}/api/kv/key-{RECORDS - 1:07d}"
            wait_for(lambda: _answers(last), 60, "the peer to read the records")
            check_agreement(node.url, peer.url)
            yield kafka, tmp, node, peer, services
        finally:
            for stop in reversed(services):
                stop()
            node.stop()


def arguments(doc):
    """--seconds and --rounds, and the store's worker settings."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.workers, args.threads = 3, 4
    return args


def start_relay(bootstrap, partitions, tmp):
    """bench/ceiling_relay.py, listening on tmp / RELAY."""
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "ceiling_relay.py"), str(tmp / RELAY)]
        + [bootstrap, "ceiling", str(partitions)],
        cwd=ROOT,
    )
    wait_for(lambda: (tmp / RELAY).exists(), 30, "the relay to listen")
    return relay


# The store's worker class (an event loop), and gunicorn's threaded worker, which the
# store ran on before it (docs/PROFILES.md §11) and the PUT floors still use.
STORE_WORKER, THREADED = "kvstore.api.loop.StoreWorker", "gthread"


def serve(app, bootstrap, partitions, workers=3, threads=4, relay=None, worker=None):
    """gunicorn with the store's worker settings, serving bench/ceiling_app:`app`
    (`relay`: the socket of bench/ceiling_relay.py, for the app of that name), under
    `worker` (THREADED unless `app` is an ASGI app)."""
    worker = worker or (STORE_WORKER if app.endswith("_asgi") else THREADED)
    port = free_port()
    web = subprocess.Popen(
        [GUNICORN, "-w", str(workers), "--threads", str(threads), "-k", worker]
        + ["-b", f"127.0.0.1:{port}", f"bench.ceiling_app:{app}"],
        cwd=ROOT,
        env=dict(
            os.environ,
            CEILING_BOOTSTRAP=bootstrap,
            CEILING_TOPIC="ceiling",
            CEILING_PARTITIONS=str(partitions),
            CEILING_RELAY=str(relay),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    put = app in ("produce", "relay")
    wait_for(lambda: _answers(url, put), 30, f"{app} to answer")
    return web, url


LOADS = {
    "GET": (GET, ("store", "streams", "hello_asgi", "hello")),
    "PUT": (PUT, ("store", "streams", "produce", "relay")),
}


def measure(urls, services_pids, broker, args, parts=None, loads=LOADS):
    """`parts`: {service: pids} of a process whose share of its service's CPU is
    printed too (the relay's); `loads`: {kind: (wrk script, services)}."""
    parts = parts or {}
    for kind, (script, names) in loads.items():
        for name in names:
            wrk(urls[name], script, 16, 3 if kind == "GET" else 20)  # warm-up
        figures = {name: [] for name in names}
        for n in range(args.rounds):
            for name in names if n % 2 == 0 else reversed(names):
                part = {"of which " + name: parts[name]} if name in parts else {}
                figure, spent = cpu_per_request(
                    {"service": services_pids[name], "broker": broker, **part},
                    lambda: wrk(urls[name], script, 16, args.seconds),
                )
                figures[name].append({**figure, **spent})
        for name, runs in figures.items():
            med = {k: statistics.median(f[k] for f in runs) for k in runs[0]}
            each = ", ".join(f"{f['rps']:,.0f}" for f in runs)
            part = "of which " + name
            share = f" ({part} {med[part]:.3f})" if part in med else ""
            print(
                f"{kind} {name:8} {med['rps']:8,.0f} req/s  p50 {med['p50_ms']:.2f} ms"
                f"  p99 {med['p99_ms']:.2f} ms  CPU ms per request: service "
                f"{med['service']:.3f}{share}, broker {med['broker']:.3f}"
                f"  (rounds: {each};"
                f" non-2xx {sum(f['non2xx'] for f in runs):.0f})",
                flush=True,
            )


def _answers(url, put=False):
    method = ["-X", "PUT", "--data", "{}"] if put else []
    try:
        subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", *method, url], check=True, timeout=15
        )
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


if __name__ == "__main__":
    main()
