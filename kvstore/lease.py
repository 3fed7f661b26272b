"""The membership lease: how long this instance may still answer for its partitions.

The consumer process renews it each time the group coordinator answers a heartbeat (or
a join) and writes its end into the cache; the web workers check it when they serve and
again before they acknowledge. It runs on CLOCK_BOOTTIME, which every process of the
machine shares and which keeps counting while a process is stopped or the machine
sleeps, and it ends before the coordinator can have given the partitions away.
"""

import os
import time

# The lease ends this long before the coordinator's session could expire: room for the
# heartbeat's way to the broker and for the web worker's own work after its check.
MARGIN = 0.25  # of the session timeout


def now():
    """Seconds on the clock every lease is measured by."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def until(anchor, session_timeout_ms):
    """When a lease anchored at `anchor` (the send time of a request the coordinator
    answered) ends."""
    return anchor + session_timeout_ms / 1000 * (1 - MARGIN)


def held(member):
    """Whether the consumer behind `member` (a cache.Member) holds its lease now."""
    return (
        member is not None
        and member.lease_until is not None
        and (now() < member.lease_until)
    )


def process_alive(pid):
    """Whether a process with this pid runs on this machine (signal 0 probes it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
