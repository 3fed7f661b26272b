"""The client's side of a watch (kvstore.client.Client.watch): Server-Sent Events read
off a streamed response, and a loop that reconnects after a disconnect, through any
member, from the last event id it saw, so nothing is missed and nothing repeated.
"""

import dataclasses
import json
import logging
import time

import requests

logger = logging.getLogger(__name__)


class HistoryGone(Exception):
    """410: compaction removed history the watch needs; list again and watch from the
    list's position. `oldest_position`: the oldest a watch may resume from."""

    def __init__(self, detail, oldest_position):
        super().__init__(detail)
        self.oldest_position = oldest_position


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str  # "put" or "delete"
    key: str
    value: object  # None for a delete
    version: str  # "partition-offset", as the ETag says it
    position: str  # the event id: the position vector after it


def events(client, namespace, prefix, key, from_position, read_timeout=60.0):
    """Events of a watch, forever (until the caller stops), reconnecting as needed."""
    last = None if from_position is None else str(from_position)
    failures = 0
    while True:
        try:
            for item in _one_stream(client, namespace, prefix, key, last, read_timeout):
                failures = 0
                if isinstance(item, str):  # the watch moved past what it skipped
                    last = item
                    continue
                last = item.position
                yield item
            failures = 0  # the server ended it (a retry hint): go on from `last`
        except requests.HTTPError:
            raise  # refused as asked (400, 401, 403, 404): asking again changes nothing
        except (requests.RequestException, _Retry) as exc:
            # Refused connections, timeouts, and streams cut off mid-way (a member
            # leaving, a slow reader, a stopping worker).
            failures += 1
            logger.info(
                "watch of %s through %s: %s; resuming after %s",
                namespace,
                client.bases[0],
                exc,
                last,
            )
            if failures > client.attempts:
                raise client_unavailable(namespace, exc) from exc
            client.bases.append(client.bases.pop(0))  # another member next time
            time.sleep(min(getattr(exc, "wait", 0.2 * failures), client.max_wait))


class _Retry(Exception):
    def __init__(self, wait):
        super().__init__(f"retry in {wait}s")
        self.wait = wait


def client_unavailable(namespace, exc):
    from kvstore.client import ClusterUnavailable

    return ClusterUnavailable(f"watch of {namespace}: {exc}")


def _one_stream(client, namespace, prefix, key, last, read_timeout):
    params = {"key": key} if key is not None else {"prefix": prefix}
    headers = {**client.headers, "Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = last
    url = f"{client.bases[0]}/api/{namespace}/watch"
    with client.session.get(
        url,
        params=params,
        headers=headers,
        stream=True,
        timeout=(client.timeout, read_timeout),
    ) as answer:
        if answer.status_code == 410:
            body = answer.json()
            raise HistoryGone(body["detail"], body["oldest_position"])
        if answer.status_code == 503:
            raise _Retry(float(answer.headers.get("Retry-After", 1)))
        answer.raise_for_status()
        for kind, data, event_id in parse(answer.iter_lines(delimiter=b"\n")):
            if kind is None and event_id:
                yield event_id
            elif kind == "error":
                # History it needed was compacted meanwhile: the next open says 410,
                # with the oldest position there is.
                raise _Retry(0)
            elif kind in ("put", "delete") and data:
                body = json.loads(data)
                yield Event(
                    kind, body["key"], body.get("value"), body["version"], event_id
                )


def parse(lines):
    """(event type, data, last event id) of each event in SSE `lines` (bytes, no line
    ends); id-only messages move the last id without an event (None type)."""
    kind, data, last_id, moved = None, [], None, False
    for raw in lines:
        line = raw.decode("utf-8")
        if not line:
            if data or kind:
                yield kind or "message", "\n".join(data), last_id
            elif moved:
                yield None, "", last_id
            kind, data, moved = None, [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id, moved = value, True
