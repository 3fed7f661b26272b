"""gunicorn's worker class, measured: the store and the floor under the store's
worker class (kvstore.api.loop: gunicorn's uvicorn worker, the deployment) and under
gunicorn's threaded worker (which the store ran on until docs/PROFILES.md §11), beside
the Kafka Streams service, in one run on one broker.

    .venv/bin/python bench/asgi.py [--seconds 8] [--rounds 2]

(after bench/run has once set up wrk and built the peer's jar).

One instance (its consumer, 20,000 records) has two web sides on two ports, both
3 workers reading its one cache: `store`, the deployment (config.asgi), and
`store-threaded`, the same store under the threaded worker (config.wsgi, 3 x 4
threads). `hello` and `hello-threaded` are the two worker classes answering a fixed
200 (bench/ceiling_app.py). The rounds alternate the order of services, as
bench/ceiling.py's do; "service" CPU counts the instance's consumer for both web
sides. Both web sides' workers wake on every write the consumer applies, whichever
side took it, so PUTs here are slower than in bench/ceiling.py: compare the two
sides' PUTs with each other only.
"""

import os
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from bench.ceiling import (  # noqa: E402
    GET,
    PUT,
    _answers,
    arguments,
    measure,
    serve,
    store_and_peer,
)
from bench.quick import BROKER, RECORDS  # noqa: E402
from bench.streams_peer import check_agreement  # noqa: E402

from tests.brokers import free_port  # noqa: E402
from tests.instances import GUNICORN, pgrep, wait_for  # noqa: E402

LOADS = {
    "GET": (GET, ("store", "store-threaded", "streams", "hello", "hello-threaded")),
    "PUT": (PUT, ("store", "store-threaded", "streams")),
}


def main():
    args = arguments(__doc__)
    with store_and_peer(args, "asgi-streams") as (kafka, tmp, node, peer, services):
        consumer = [node.consumer.pid]
        pids = {
            "store": consumer + pgrep("-P", str(node.web.pid)),
            "streams": [peer.pid],
        }
        urls = {"store": node.url, "streams": peer.url}
        threaded, urls["store-threaded"] = serve_threaded(node, tmp)
        services.append(threaded.terminate)
        pids["store-threaded"] = consumer + pgrep("-P", str(threaded.pid))
        check_agreement(urls["store-threaded"], peer.url)
        check_same_answers(urls["store-threaded"], node.url)
        for name, app in (("hello", "hello_asgi"), ("hello-threaded", "hello")):
            hello, urls[name] = serve(app, kafka.bootstrap, 1)
            services.append(hello.terminate)
            pids[name] = pgrep("-P", str(hello.pid))
        measure(urls, pids, pgrep("-f", BROKER), args, loads=LOADS)


# Headers that differ between two answers of the same server anyway, and the
# hop-by-hop Connection: keep-alive, which the threaded worker sends and uvicorn
# leaves implied (HTTP/1.1 keeps a connection alive by default).
OWN_EACH = {"date", "server", "server-timing", "connection"}


def check_same_answers(threaded, uvicorn):
    """Both web sides give the same answer, headers and all, to GETs the fast path
    answers (a key, a missing key, a key read after a write) and to some it leaves to
    Django (the browsable API, a bad key). Each GET is asked twice: the first teaches
    a fast path the headers Django gives."""
    paths = [f"/api/kv/key-{n:07d}" for n in (0, 7, RECORDS - 1)]
    paths += ["/api/kv/agree-store-0", "/api/kv/no-such-key", "/api/kv/", "/api/nope/x"]
    for path in paths:
        for accept in ("application/json", "text/html"):
            answers = [
                [_answer(url + path, accept) for _ in range(2)]
                for url in (threaded, uvicorn)
            ]
            assert answers[0] == answers[1], (path, accept, answers)


def _answer(url, accept):
    got = requests.get(url, headers={"Accept": accept}, allow_redirects=False)
    headers = {
        k.lower(): v for k, v in got.headers.items() if k.lower() not in OWN_EACH
    }
    if accept == "text/html":  # the page carries a CSRF token of its own each time
        return got.status_code, sorted(headers)
    return got.status_code, headers, got.content


def serve_threaded(node, tmp):
    """The store under gunicorn's threaded worker, 3 workers x 4 threads, with
    `node`'s settings and a metrics directory of its own: (the process, its URL)."""
    port = free_port()
    web = subprocess.Popen(
        [GUNICORN, "-c", str(ROOT / "bench" / "asgi_gunicorn.conf.py"), "-w", "3"]
        + ["--threads", "4", "-b", f"127.0.0.1:{port}", "config.wsgi"],
        cwd=ROOT,
        env=dict(node.env(), BENCH_METRICS_DIR=str(tmp / "threaded.metrics")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url + "/healthz"), 30, "the threaded web side to answer")
    return web, url


if __name__ == "__main__":
    main()
