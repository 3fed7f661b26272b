"""Kafka's end offsets for a web process's catch-ups (strong reads, writes to a
partition that just arrived): one request at a time, and an answer shared by every
caller that asked before it was sent.

Many threads asking at once used to send as many ListOffsets requests, and past five
in flight on one connection kafka-python fails the rest at once ("Node paused"), which
the writers answered with 503s. An answer may be shared only with callers that asked
before the request was sent: it then covers every record appended before they asked.
"""

import threading
import time


class EndOffsets:
    """`get(topic, partition)`; `ask(topic, partition)` is the Kafka request."""

    def __init__(self, ask, clock=time.monotonic):
        self._ask, self._clock = ask, clock
        self._lock = threading.Lock()
        self._answers = {}  # (topic, partition) -> (sent at, end offset)

    def get(self, topic, partition):
        asked = self._clock()
        with self._lock:  # one request at a time; those that waited may share it
            answer = self._answers.get((topic, partition))
            if answer is not None and answer[0] >= asked:
                return answer[1]
            sent = self._clock()
            end = self._ask(topic, partition)
            self._answers[(topic, partition)] = (sent, end)
            return end
