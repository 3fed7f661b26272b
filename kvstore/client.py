"""A Python client that needs no hop: it keeps the cluster's partition map, computes
each key's partition itself and goes straight to its owner; when its map is stale it
follows the 307 (method, body and headers, the API key included, kept) and refreshes the
map; it waits out 503s as Retry-After says. `curl --location-trusted` does the redirect
part from a shell.

    client = Client("http://127.0.0.1:8000", api_key="kvs_...")
    client.put("kv", "greeting", {"hello": "world"})
    client.get("kv", "greeting").json()

The key goes only to the base URL, the `peers` given, and the members the cluster map
names (reading the map needs an admin key): a 307 anywhere else is not followed.
"""

import time
from urllib.parse import quote, urlsplit

import requests

from kvstore.partitioner import partition_for


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
        url = self.url(namespace, key)
        headers = {**self.headers, **kwargs.pop("headers", {})}
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
                url = self._retarget(namespace, key)
                continue
            if answer.status_code == 307:
                self.hops += 1
                url = answer.headers["Location"]  # same method, body and headers
                if not self.trusted(url):
                    raise UntrustedRedirect(f"{method} {namespace}/{key}: {url}")
                self._refresh_quietly()
                continue
            if answer.status_code == 503 and "Retry-After" in answer.headers:
                self._pause(float(answer.headers["Retry-After"]))
                url = self._retarget(namespace, key)
                continue
            return answer
        raise ClusterUnavailable(
            f"{method} {namespace}/{key}: no answer after {self.attempts} attempts"
        )

    def get(self, namespace, key, **kwargs):
        return self.request("GET", namespace, key, **kwargs)

    def put(self, namespace, key, value, if_match=None, **kwargs):
        headers = {
            **kwargs.pop("headers", {}),
            **({"If-Match": if_match} if if_match else {}),
        }
        return self.request(
            "PUT", namespace, key, json=value, headers=headers, **kwargs
        )

    def delete(self, namespace, key, if_match=None, **kwargs):
        headers = {
            **kwargs.pop("headers", {}),
            **({"If-Match": if_match} if if_match else {}),
        }
        return self.request("DELETE", namespace, key, headers=headers, **kwargs)

    def _retarget(self, namespace, key):
        self._refresh_quietly()
        return self.url(namespace, key)

    def _refresh_quietly(self):
        if self.map_denied:
            return
        try:
            self.refresh()
        except ClusterUnavailable:
            pass

    def _pause(self, seconds):
        time.sleep(min(max(seconds, 0.05), self.max_wait))
