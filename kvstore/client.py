"""A Python client that needs no hop: it keeps the cluster's partition map, computes
each key's partition itself and goes straight to its owner; when its map is stale it
follows the 307 (method, body and headers, the API key included, kept) and refreshes the
map; it waits out 503s as Retry-After says. `curl --location-trusted` does the redirect
part from a shell.

    client = Client("http://127.0.0.1:8000", api_key="kvs_...")
    client.put("kv", "greeting", {"hello": "world"})
    client.get("kv", "greeting").json()
    for event in client.watch("kv", prefix="greet"):
        print(event.kind, event.key, event.value)

It remembers the latest position it saw of each partition (its writes' and reads') and
sends it with every read, so whichever instance answers, it reads its own writes and
never goes back in time. Every write carries an Idempotency-Key, so a write whose
answer was lost is retried safely.

The key goes only to the base URL, the `peers` given, and the members the cluster map
names (reading the map needs an admin key): a 307 anywhere else is not followed.
"""

import time
import uuid
from urllib.parse import quote, urlsplit

import requests

from kvstore import clientwatch, positions
from kvstore.partitioner import partition_for

HistoryGone = clientwatch.HistoryGone


class ClusterUnavailable(Exception):
    """No member of the cluster could be reached, or the request kept failing."""


class UntrustedRedirect(Exception):
    """A 307 pointed outside the cluster the client knows: the key is not sent
    there."""


def base_of(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Client:
    def __init__(
        self,
        base_url,
        api_key=None,
        peers=(),
        session=None,
        attempts=10,
        max_wait=5.0,
        timeout=30.0,
    ):
        self.bases = [base_url.rstrip("/")] + [peer.rstrip("/") for peer in peers]
        self.session = session or requests.Session()
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.attempts, self.max_wait, self.timeout = attempts, max_wait, timeout
        self.owners, self.partitions = {}, {}
        self.map_denied = False  # this key may not read /api/cluster: 307s alone route
        self.hops = 0  # redirects followed so far: 0 while the map is right
        self.positions = {}  # namespace -> positions.Vector: the latest seen

    def refresh(self):
        """Fetch the partition map from the first member that answers; None when the
        key may not read it."""
        for base in list(self.bases):
            try:
                answer = self.session.get(
                    f"{base}/api/cluster", headers=self.headers, timeout=self.timeout
                )
            except requests.RequestException:
                continue
            if answer.status_code in (401, 403):
                self.map_denied = True
                return None
            try:
                return self._learn(answer.json())
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        raise ClusterUnavailable(f"no member answered: {self.bases}")

    def _learn(self, described):
        self.owners = {
            int(p): owner for p, owner in described["owners"].items() if owner
        }
        self.partitions = {
            ns: facts["partitions"] for ns, facts in described["namespaces"].items()
        }
        self.bases = list(dict.fromkeys(self.bases + described["members"]))
        return described

    def trusted(self, url):
        """Whether `url` is on a host this client may send its key to."""
        return base_of(url) in {base_of(base) for base in self.bases}

    def url(self, namespace, key):
        """Where a request for `key` goes: its owner by the map, or any member when the
        map has no owner."""
        if namespace not in self.partitions and not self.map_denied:
            self.refresh()
        owner = (
            self.owners.get(partition_for(key, self.partitions[namespace]))
            if namespace in self.partitions
            else None
        )
        return f"{owner or self.bases[0]}/api/{namespace}/{quote(key, safe='')}"

    def request(self, method, namespace, key, **kwargs):
        """Send one key-addressed request to its owner; returns the final
        requests.Response."""
        return self.send(method, namespace, lambda: self.url(namespace, key), **kwargs)

    def send(self, method, namespace, where, **kwargs):
        """Send a request to `where()` (asked again after a failure), following 307s
        and waiting out 503s; a write is retried after a lost answer (its
        Idempotency-Key makes that safe), a read waits for this client's positions."""
        url, what = where(), f"{method} {namespace}"
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if method == "GET" and namespace in self.positions:
            headers.setdefault(positions.MIN_HEADER, str(self.positions[namespace]))
        for _ in range(self.attempts):
            try:
                answer = self.session.request(
                    method,
                    url,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self.timeout,
                    **kwargs,
                )
            except requests.ConnectionError:
                self._pause(0.2)
                self.bases.append(self.bases.pop(0))  # try another member next
                url = self._retried(where)
                continue
            if answer.status_code == 307:
                self.hops += 1
                url = answer.headers["Location"]  # same method, body and headers
                if not self.trusted(url):
                    raise UntrustedRedirect(f"{what}: {url}")
                self._refresh_quietly()
                continue
            if self._retry(answer, headers):
                self._pause(float(answer.headers.get("Retry-After", 1)))
                url = self._retried(where)
                continue
            self._learn_position(namespace, answer)
            return answer
        raise ClusterUnavailable(f"{what}: no answer after {self.attempts} attempts")

    @staticmethod
    def _retry(answer, headers):
        """503 with Retry-After: nothing was done; 504 (outcome unknown): done at most
        once, when the request carries an Idempotency-Key."""
        if answer.status_code == 503:
            return "Retry-After" in answer.headers
        return answer.status_code == 504 and "Idempotency-Key" in headers

    def _learn_position(self, namespace, answer):
        text = answer.headers.get(positions.HEADER)
        if not text:
            return
        try:
            vector = positions.parse(text, namespace)
        except positions.PositionInvalid:
            return
        self.positions[namespace] = vector.merged(self.positions.get(namespace))

    def get(self, namespace, key, **kwargs):
        return self.request("GET", namespace, key, **kwargs)

    def put(self, namespace, key, value, if_match=None, **kwargs):
        headers = _write_headers(kwargs.pop("headers", {}), if_match)
        return self.request(
            "PUT", namespace, key, json=value, headers=headers, **kwargs
        )

    def delete(self, namespace, key, if_match=None, **kwargs):
        headers = _write_headers(kwargs.pop("headers", {}), if_match)
        return self.request("DELETE", namespace, key, headers=headers, **kwargs)

    def post(self, namespace, value, **kwargs):
        """Create an entry with a server-made id (`POST /api/{namespace}/`); retried,
        it still creates one."""
        headers = _write_headers(kwargs.pop("headers", {}), None)
        return self.send(
            "POST",
            namespace,
            lambda: self._collection(namespace),
            json=value,
            headers=headers,
            **kwargs,
        )

    def list(self, namespace, prefix="", limit=1000):
        """(every entry whose key starts with `prefix`, as the API lists them; the
        position vector of the first page, from which a watch misses nothing)."""
        results, params, first = [], {"limit": limit, "prefix": prefix}, None
        url = self._collection(namespace)
        while url:
            answer = self.send("GET", namespace, lambda: url, params=params)
            answer.raise_for_status()
            page = answer.json()
            results += page["results"]
            first = first or positions.parse(page["position"], namespace)
            url, params = page["next"], None
        return results, first

    def watch(self, namespace, prefix="", key=None, from_position=None, **kwargs):
        """A generator of Events (kind, key, value, version, position) of `namespace`
        from `from_position` (a list's position, or an event's), else from now; it
        reconnects after a disconnect from its last event, through any member.
        HistoryGone when compaction removed what it needs: list again."""
        return clientwatch.events(self, namespace, prefix, key, from_position, **kwargs)

    def _collection(self, namespace):
        return f"{self.bases[0]}/api/{namespace}/"

    def _retried(self, where):
        self._refresh_quietly()
        return where()

    def _refresh_quietly(self):
        if self.map_denied:
            return
        try:
            self.refresh()
        except ClusterUnavailable:
            pass

    def _pause(self, seconds):
        time.sleep(min(max(seconds, 0.05), self.max_wait))


def _write_headers(headers, if_match):
    """A write's headers: an Idempotency-Key of its own (unless given), If-Match."""
    headers = {"Idempotency-Key": uuid.uuid4().hex, **headers}
    if if_match:
        headers["If-Match"] = if_match
    return headers
